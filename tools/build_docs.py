"""Build the course site: run every notebook in nbs/ as Jupyter's Run All does, then render it to HTML.

    python tools/build_docs.py                            # every notebook -> _docs/
    python tools/build_docs.py --only 00 03 index --jobs 2

Each notebook runs top to bottom in a fresh `python3` kernel with nbs/ as its working folder, no
flags and no extra environment, so a page shows what a student sees after Run All. `#| slow` and
`#| cuda` cells run too, as they do in Jupyter, where each prints one line saying how to run it
(`results.long_cell`). A cell that raises or runs past --timeout fails the
build, naming the notebook and the cell; every notebook is still run so all failures are listed.

Each page is one self-contained HTML file (figures are embedded as data URIs) sharing `style.css`.
The index page comes from nbs/index.ipynb: a lesson named in it as `01_competition` (code font) or
linked as `01_competition.ipynb` links to that lesson's page. Lessons are chained by previous/next links
in numeric order. Progress-bar widgets are left out of the pages: a static page has no kernel to
draw them. Each page records how many figures it shows (`<meta name="figures">`) for the browser test.
"""
import argparse, html, re, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'


def find_notebooks(only=None):
    "Notebooks in nbs/, in numeric order; `only` keeps those whose name is, or starts with, one of its words."
    paths = sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    if not only: return paths
    picked = [p for p in paths if any(p.stem == o or p.stem.startswith(o + '_') for o in only)]
    missing = [o for o in only if not any(p.stem == o or p.stem.startswith(o + '_') for p in paths)]
    if missing: sys.exit(f'--only: no notebook in nbs/ matches {", ".join(missing)}')
    return picked


def _cell_name(nb, i):
    first = next((l for l in nb.cells[i].source.splitlines() if l.strip() and not l.startswith('#|')), '')
    return f'cell {i + 1} of {len(nb.cells)} ({first[:60]!r})'


def execute(path, timeout):
    "Run `path` top to bottom in a fresh python3 kernel; return (executed notebook as JSON, seconds, error or None)."
    nb = nbformat.read(path, as_version=4)
    current = {'index': None}
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(NBS)}},
                            on_cell_execute=lambda cell, cell_index: current.update(index=cell_index))
    start = time.perf_counter()
    try:
        client.execute()
        err = None
    except CellTimeoutError:
        err = f'{path.name}: {_cell_name(nb, current["index"])} ran past the {timeout} s per-cell timeout'
    except CellExecutionError as e:
        msg = re.sub(r'\x1b\[[0-9;]*m', '', str(e)).strip()  # the traceback's last line, without terminal colours
        last = msg.splitlines()[-1] if msg else type(e).__name__
        err = f'{path.name}: {_cell_name(nb, current["index"])} raised {last}'
    return nbformat.writes(nb), time.perf_counter() - start, err


def count_figures(nb):
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs]
    return sum(any(m in o.get('data', {}) for m in IMAGE_MIMES) for o in outputs)


def prepare(nb):
    "Shape an executed notebook for reading: title first; no `#| hide` cells, `#|` lines or progress-bar widgets."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            lines = c.source.splitlines()
            if any(l.startswith('#|') and l[2:].split()[:1] == ['hide'] for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            c.outputs = [o for o in c.outputs if WIDGET_MIME not in o.get('data', {})]
            if not c.source and not c.outputs: continue
        cells.append(c)
    title = next((c for c in cells if c.cell_type == 'markdown' and c.source.startswith('# ')), None)
    nb.cells = [title] + [c for c in cells if c is not title] if title else cells  # title first, as in nbdev's pages
    nb.metadata.pop('widgets', None)
    return nb


def title_of(nb, default):
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return default


def link_lessons(body, stems):
    "Point `NN_name.ipynb` links and `NN_name` code spans at the lesson pages."
    body = re.sub(r'href="([\w-]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
    def link(m): return f'<a href="{m[1]}.html"><code>{m[1]}</code></a>' if m[1] in stems else m[0]
    return re.sub(r'(?<!">)<code>(\d\d_\w+)</code>(?!</a>)', link, body)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="figures" content="{figures}">
<title>{title}</title>
<link rel="stylesheet" href="style.css">
</head>
<body>
<header><a href="index.html">maskcls</a>{pager}</header>
<main>
{body}
</main>
<footer>{pager}</footer>
</body>
</html>
"""

CSS = """body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
header, footer { display: flex; gap: 1.5em; align-items: baseline; max-width: 60rem; margin: 0 auto; }
header, footer { padding: .8em 1.2em; }
header { border-bottom: 1px solid #ddd; } footer { border-top: 1px solid #ddd; margin-top: 2em; }
header > a:first-child { font-weight: 700; margin-right: auto; }
nav.pager { display: flex; gap: 1.5em; margin-left: auto; }
main { max-width: 60rem; margin: 0 auto; padding: 0 1.2em; }
a { color: #0550ae; }
h1, h2, h3 { line-height: 1.25; } h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; }
.anchor-link { display: none; }
blockquote { margin: 0; padding: 0 1em; color: #555; border-left: 4px solid #ddd; }
code, pre { font: 13.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
:not(pre) > code { background: #f3f3f3; padding: .1em .3em; border-radius: 3px; }
.cell { margin: 1em 0; }
.input_area { background: #f7f7f8; border: 1px solid #e3e3e6; border-radius: 4px; }
.input_area pre, .output_area pre { margin: 0; padding: .6em .8em; overflow-x: auto; }
.text_cell_render pre { background: #f7f7f8; padding: .6em .8em; border-radius: 4px; overflow-x: auto; }
.output_area { border-left: 3px solid #e3e3e6; margin-top: .3em; overflow-x: auto; }
.output_stderr pre { background: #fff5f5; }
.output_area img { max-width: 100%; height: auto; display: block; padding: .4em .8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
thead th, th { background: #f5f5f5; }
"""


def render(nb, stem, stems, prev, nxt):
    "One page: the notebook's cells without prompts, the shared stylesheet, previous/next links."
    figures = count_figures(nb)
    nb = prepare(nb)
    exporter = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'path': str(NBS)}})
    links = []
    if prev: links.append(f'<a rel="prev" href="{prev}.html">&larr; {prev}</a>')
    if nxt: links.append(f'<a rel="next" href="{nxt}.html">{nxt} &rarr;</a>')
    pager = f'<nav class="pager">{"".join(links)}</nav>' if links else ''
    return PAGE.format(title=html.escape(title_of(nb, stem)), figures=figures, pager=pager,
                       body=link_lessons(body, stems))


def build(paths, out, jobs, timeout):
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob('*.html'), out / 'style.css']: old.unlink(missing_ok=True)
    executed, failures = {}, []
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(execute, p, timeout): p for p in paths}
        for f in as_completed(futs):
            nb_json, secs, err = f.result()
            print(f'{"FAILED" if err else "ran":>6} {futs[f].name:<22} {secs:7.1f} s', flush=True)
            if err: failures.append(err)
            else: executed[futs[f].stem] = nbformat.reads(nb_json, as_version=4)
    if failures:
        sys.exit(f'{len(failures)} notebook(s) failed under Run All; no pages written:\n  '
                 + '\n  '.join(sorted(failures)))
    lessons = [p.stem for p in paths if p.stem in executed and p.stem[:1].isdigit()]
    for stem, nb in executed.items():
        if stem in lessons:
            i = lessons.index(stem)
            prev, nxt = lessons[i - 1] if i else None, lessons[i + 1] if i + 1 < len(lessons) else None
        else: prev, nxt = None, lessons[0] if lessons else None  # the index leads to the first lesson
        (out / f'{stem}.html').write_text(render(nb, stem, set(lessons), prev, nxt), encoding='utf-8')
    css = CSS + HtmlFormatter(style='default').get_style_defs('.highlight') + '\n'
    (out / 'style.css').write_text(css, encoding='utf-8')
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    secs = time.perf_counter() - start
    print(f'built {len(executed)} page(s) in {out} in {secs:.1f} s; site size {size / 1e6:.2f} MB')


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', nargs='+', metavar='NAME',
                   help='build only these notebooks (name or number prefix, e.g. 00 02_eda index)')
    p.add_argument('--out', type=Path, default=ROOT / '_docs', help='site folder (default: _docs/)')
    p.add_argument('--jobs', type=int, default=1, help='notebooks executed at once (default: 1)')
    p.add_argument('--timeout', type=int, default=600, help='seconds one cell may run (default: 600)')
    a = p.parse_args()
    build(find_notebooks(a.only), a.out.resolve(), a.jobs, a.timeout)
