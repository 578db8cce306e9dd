"""Build the course site from the notebooks as committed: their outputs are the ones on the page, nothing is run.

    python tools/build_docs.py                        # every page -> _docs/, in a few seconds
    python tools/build_docs.py --only 01 02_eda index # a few pages (a name, or a number prefix)
    python tools/build_docs.py --execute --jobs 2     # run each notebook first, as Jupyter's Run All does

The site has the course lessons (nbs/NN_name.ipynb, in course order), the engine's reference notebooks
(nbs/engine/NN_name.ipynb), their solution notebooks, and the index (nbs/index.ipynb); pages mirror the folders
(`engine/06_cache.html`), so a link between notebooks (`engine/06_cache.ipynb`, `../07_cv.ipynb`) becomes the
link between their pages, and a notebook named in code font (`07_cv`) links to its page. Every page carries the
contents: the lessons in course order, then the engine's reference notebooks, each under the title of its
`# Title` cell, the current page marked; lessons (and reference notebooks) are chained by previous/next links.

The lessons are committed executed (tools/lessons.py runs them), so a page shows what a student sees after Run
All; a notebook without outputs renders without them, and the build log says so. Cells a reader does not need
stay off the pages: the `#| default_exp` cell, `#| hide` cells, and cells that only import (exported or not);
`#| echo: false` hides a cell's code and `#| output: false` its outputs, as in nbdev.
Progress-bar widgets are left out: a static page has no kernel to draw them. Figures, and images that markdown
cells show (`![...](images/x.png)`), are embedded as data URIs, so each page is one HTML file plus the shared
`style.css`. Each page records how many figures its notebook holds (`<meta name="figures">`) for the browser test.
"""
import argparse, ast, html, os, re, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
IMAGE_MIMES = ('image/png', 'image/jpeg', 'image/gif', 'image/svg+xml')
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'
NUMBERED = '[0-9][0-9]_*.ipynb'


def find_notebooks():
    "Every notebook of the site by part: lessons and engine notebooks in numeric order, solutions, the index."
    nbs = NBS
    return dict(lessons=sorted(nbs.glob(NUMBERED)), engine=sorted((nbs / 'engine').glob(NUMBERED)),
                solutions=sorted([*(nbs / 'solutions').glob('*.ipynb'), *(nbs / 'engine' / 'solutions').glob('*.ipynb')]),
                index=[p for p in [nbs / 'index.ipynb'] if p.exists()])


def select(paths, only):
    "The notebooks whose stem is, or starts with `WORD_`, one of the words of `only`; every one without `only`."
    if not only: return paths
    def hit(p, o): return p.stem == o or p.stem.startswith(o + '_')
    missing = [o for o in only if not any(hit(p, o) for p in paths)]
    if missing: sys.exit(f'--only: no notebook in nbs/ matches {", ".join(missing)}')
    return [p for p in paths if any(hit(p, o) for o in only)]


def title_of(nb, default):
    "The text of the notebook's `# Title` cell."
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return default


def count_figures(nb):
    outputs = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
    return sum(any(m in o.get('data', {}) for m in IMAGE_MIMES) for o in outputs)


def n_outputs(nb): return sum(len(c.get('outputs', [])) for c in nb.cells if c.cell_type == 'code')


def directives(source):
    "The words of a cell's `#|` lines: `#| export`, `#| hide` -> {'export', 'hide'}."
    return {w for l in source.splitlines() if l.startswith('#|') for w in l[2:].replace(':', ' ').split()[:1]}


def only_imports(source):
    "Whether the code (without `#|` lines and comments) is nothing but import statements."
    code = '\n'.join(l for l in source.splitlines() if not l.startswith(('#|', '%', '!')))
    try: body = ast.parse(code).body
    except SyntaxError: return False
    return bool(body) and all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body)


def off_page(cell):
    "A cell a reader does not need: `#| default_exp`, `#| hide`, or one that only imports."
    if cell.cell_type != 'code': return False
    d = directives(cell.source)
    return bool(d & {'default_exp', 'hide'}) or only_imports(cell.source)


def prepare(nb):
    "Shape a notebook for reading: title first; no off-page cells, `#|` lines or progress-bar widgets."
    cells = []
    for c in nb.cells:
        if off_page(c): continue
        if c.cell_type == 'code':
            flags = {l[2:].replace(' ', '') for l in c.source.splitlines() if l.startswith('#|')}
            c.source = '' if 'echo:false' in flags else (  # nbdev's `#| echo: false` and `#| output: false`
                '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip())
            c.outputs = [o for o in c.outputs if WIDGET_MIME not in o.get('data', {}) and 'output:false' not in flags]
            if not c.source and not c.outputs: continue
        cells.append(c)
    title = next((c for c in cells if c.cell_type == 'markdown' and c.source.startswith('# ')), None)
    nb.cells = [title] + [c for c in cells if c is not title] if title else cells  # title first, as in nbdev's pages
    nb.metadata.pop('widgets', None)
    return nb


def page_of(path):
    "The page of a notebook, relative to the site's root: nbs/engine/06_cache.ipynb -> engine/06_cache.html."
    return path.relative_to(NBS).with_suffix('.html').as_posix()


def rel(target, page):
    "The link from `page` to `target` (both relative to the site's root)."
    return Path(os.path.relpath(target, Path(page).parent)).as_posix()


def link_pages(body, page, stems, pages):
    "Point links to notebooks (`x.ipynb`) at their pages, and code spans naming a notebook (`07_cv`) too."
    def href(m):
        target, anchor = m[1], m[2] or ''
        resolved = os.path.normpath(Path(page).parent / (target[:-len('.ipynb')] + '.html')).replace(os.sep, '/')
        if resolved in pages: return f'href="{rel(resolved, page)}{anchor}"'
        return m[0]
    body = re.sub(r'href="(?![a-z]+:|/|#)([^"#]+\.ipynb)(#[^"]*)?"', href, body)
    def code(m): return f'<a href="{rel(stems[m[1]], page)}"><code>{m[1]}</code></a>' if m[1] in stems else m[0]
    return re.sub(r'(?<!">)<code>(\d\d_\w+)</code>(?!</a>)', code, body)


def contents(parts, titles, page):
    "The contents on every page: lessons in course order, then the engine's reference notebooks; `page` marked."
    out = ['<nav class="contents" aria-label="Contents">']
    for name, key in (('Course', 'lessons'), ('Engine reference', 'engine')):
        items = []
        for p in parts[key]:
            target = page_of(p)
            num, _, _ = p.stem.partition('_')
            label = f'<span class="num">{num}</span> {html.escape(titles[target])}'
            here = ' aria-current="page"' if target == page else ''
            items.append(f'<li><a href="{rel(target, page)}"{here}>{label}</a></li>')
        if items: out.append(f'<h2>{name}</h2>\n<ol>\n' + '\n'.join(items) + '\n</ol>')
    out.append('</nav>')
    return '\n'.join(out)


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="figures" content="{figures}">
<title>{title}</title>
<link rel="stylesheet" href="{root}style.css">
</head>
<body>
<header><a href="{root}index.html">maskcls</a>{pager}</header>
<div class="layout">
{contents}
<main>
{body}
</main>
</div>
<footer>{pager}</footer>
</body>
</html>
"""

CSS = """body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
header, footer { display: flex; gap: 1.5em; align-items: baseline; max-width: 77rem; margin: 0 auto; }
header, footer { padding: .8em 1.2em; }
header { border-bottom: 1px solid #ddd; } footer { border-top: 1px solid #ddd; margin-top: 2em; }
header > a:first-child { font-weight: 700; margin-right: auto; }
nav.pager { display: flex; gap: 1.5em; margin-left: auto; }
.layout { display: grid; grid-template-columns: 15rem minmax(0, 60rem); gap: 2rem; max-width: 77rem;
          margin: 0 auto; padding: 0 1.2em; }
nav.contents { font-size: 14px; line-height: 1.4; position: sticky; top: 0; align-self: start;
               max-height: 100vh; overflow-y: auto; padding: 1em 0; }
nav.contents h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #666; border: 0;
                  margin: 1.2em 0 .4em; }
nav.contents h2:first-child { margin-top: 0; }
nav.contents ol { list-style: none; margin: 0; padding: 0; }
nav.contents li a { display: block; padding: .15em .4em; border-radius: 3px; text-decoration: none; color: #333; }
nav.contents li a:hover { background: #f3f3f3; }
nav.contents a[aria-current] { background: #e8f0fe; color: #0550ae; font-weight: 600; }
nav.contents .num { color: #888; font-variant-numeric: tabular-nums; }
main { min-width: 0; }
@media (max-width: 900px) {
  .layout { display: block; }
  nav.contents { position: static; max-height: none; border-bottom: 1px solid #ddd; }
}
a { color: #0550ae; }
h1, h2, h3 { line-height: 1.25; } main h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; }
.anchor-link { display: none; }
blockquote { margin: 0; padding: 0 1em; color: #555; border-left: 4px solid #ddd; }
code, pre { font: 13.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
:not(pre) > code { background: #f3f3f3; padding: .1em .3em; border-radius: 3px; }
.cell { margin: 1em 0; }
.input_area { background: #f7f7f8; border: 1px solid #e3e3e6; border-radius: 4px; }
.input_area pre, .output_area pre { margin: 0; padding: .6em .8em; overflow-x: auto; }
.text_cell_render pre { background: #f7f7f8; padding: .6em .8em; border-radius: 4px; overflow-x: auto; }
.text_cell_render img { max-width: 100%; height: auto; }
.output_area { border-left: 3px solid #e3e3e6; margin-top: .3em; overflow-x: auto; }
.output_stderr pre { background: #fff5f5; }
.output_area img { max-width: 100%; height: auto; display: block; padding: .4em .8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
thead th, th { background: #f5f5f5; }
"""


def trusted(html):
    "nbconvert's `clean_html` without the sanitizing: these are our own notebooks (and it takes most of the time)."
    return html.decode() if isinstance(html, bytes) else str(html)


def render(nb, path, site):
    "One page: the notebook's cells without prompts, the contents, the shared stylesheet, previous/next links."
    page = page_of(path)
    figures = count_figures(nb)
    nb = prepare(nb)
    body, _ = site['exporter'].from_notebook_node(nb, resources={'metadata': {'path': str(path.parent)}})
    missing = sorted(set(re.findall(r'<img[^>]* src="(?!data:|https?:)([^"]+)"', body)))
    links = []
    prev, nxt = site['chain'].get(page, (None, None))
    if prev: links.append(f'<a rel="prev" href="{rel(prev, page)}">&larr; {Path(prev).stem}</a>')
    if nxt: links.append(f'<a rel="next" href="{rel(nxt, page)}">{Path(nxt).stem} &rarr;</a>')
    pager = f'<nav class="pager">{"".join(links)}</nav>' if links else ''
    root = '../' * page.count('/')
    text = PAGE.format(title=html.escape(site['titles'][page]), figures=figures, pager=pager, root=root,
                       contents=contents(site['parts'], site['titles'], page),
                       body=link_pages(body, page, site['stems'], site['titles']))
    return text, missing


def execute(path, timeout):
    "Run `path` top to bottom in a fresh python3 kernel in its folder; return (notebook as JSON, seconds, error)."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    nb = nbformat.read(path, as_version=4)
    current = {'index': 0}
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}},
                            on_cell_execute=lambda cell, cell_index: current.update(index=cell_index))
    start, err = time.perf_counter(), None
    def where():
        first = next((l for l in nb.cells[current['index']].source.splitlines() if l.strip() and not l.startswith('#|')), '')
        return f'{path.relative_to(NBS)}: cell {current["index"] + 1} of {len(nb.cells)} ({first[:60]!r})'
    try: client.execute()
    except CellTimeoutError: err = f'{where()} ran past the {timeout} s per-cell timeout'
    except CellExecutionError as e:
        msg = re.sub(r'\x1b\[[0-9;]*m', '', str(e)).strip()  # the traceback's last line, without terminal colours
        err = f'{where()} raised {msg.splitlines()[-1] if msg else type(e).__name__}'
    return nbformat.writes(nb), time.perf_counter() - start, err


def read_all(paths, run, jobs, timeout):
    "The notebooks as committed, or (`run`) as a fresh Run All leaves them; exits listing every notebook that failed."
    if not run: return {p: nbformat.read(p, as_version=4) for p in paths}
    nbs, failures = {}, []
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(execute, p, timeout): p for p in paths}
        for f in as_completed(futs):
            nb_json, secs, err = f.result()
            print(f'{"FAILED" if err else "ran":>6} {futs[f].relative_to(NBS)!s:<36} {secs:7.1f} s', flush=True)
            if err: failures.append(err)
            else: nbs[futs[f]] = nbformat.reads(nb_json, as_version=4)
    if failures:
        sys.exit(f'{len(failures)} notebook(s) failed under Run All; no pages written:\n  ' + '\n  '.join(sorted(failures)))
    return nbs


def build(out, only=None, run=False, jobs=1, timeout=600):
    start = time.perf_counter()
    parts = find_notebooks()
    every = [p for ps in parts.values() for p in ps]
    todo = select(every, only)
    nbs = read_all(todo, run, jobs, timeout)
    titles = {}  # every page's title, built or not: the contents names them all
    for p in every: titles[page_of(p)] = title_of(nbs[p] if p in nbs else nbformat.read(p, as_version=4), p.stem)
    titles['index.html'] = 'maskcls'
    chain = {}
    for key in ('lessons', 'engine'):
        pages = [page_of(p) for p in parts[key]]
        for i, pg in enumerate(pages): chain[pg] = (pages[i - 1] if i else None, pages[i + 1] if i + 1 < len(pages) else None)
    if parts['lessons']: chain['index.html'] = (None, page_of(parts['lessons'][0]))  # the index leads to the first lesson
    stems = {}  # a notebook named in code font: a lesson, else a reference notebook
    for p in [*parts['engine'], *parts['lessons']]: stems[p.stem] = page_of(p)
    exporter = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True,
                            embed_images=True, filters={'clean_html': trusted})
    site = dict(parts=parts, titles=titles, chain=chain, stems=stems, exporter=exporter)

    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.rglob('*.html'), out / 'style.css']: old.unlink(missing_ok=True)
    problems = []
    for p in todo:
        nb = nbs[p]
        code = sum(c.cell_type == 'code' for c in nb.cells)
        if p in parts['lessons'] and code and not n_outputs(nb):
            print(f'note: {p.relative_to(NBS)} has no outputs committed: its page shows the code alone '
                  f'(execute it with tools/lessons.py)')
        text, missing = render(nb, p, site)
        problems += [f'{p.relative_to(NBS)} shows an image that is not there: {m}' for m in missing]
        dest = out / page_of(p)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding='utf-8')
        if not only:
            for target in re.findall(r'href="(?![a-z]+:|/|#)([^"#]+\.ipynb)', text):
                problems.append(f'{p.relative_to(NBS)} links to {target}, a notebook the site has no page for')
    css = CSS + HtmlFormatter(style='default').get_style_defs('.highlight') + '\n'
    (out / 'style.css').write_text(css, encoding='utf-8')
    for msg in problems: print(f'warning: {msg}')
    size = sum(p.stat().st_size for p in out.rglob('*') if p.is_file())
    print(f'built {len(todo)} page(s) in {out} in {time.perf_counter() - start:.1f} s; site size {size / 1e6:.2f} MB')


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--only', nargs='+', metavar='NAME',
                   help='build only these pages (a notebook name or number prefix, e.g. 01 02_eda 06_cache index)')
    p.add_argument('--nbs', type=Path, default=NBS, help='the notebooks folder (default: nbs/; the tests pass a copy)')
    p.add_argument('--out', type=Path, default=ROOT / '_docs', help='site folder (default: _docs/)')
    p.add_argument('--execute', action='store_true',
                   help='run each notebook in a fresh kernel first and show those outputs (nothing is written to nbs/)')
    p.add_argument('--jobs', type=int, default=1, help='with --execute: notebooks run at once (default: 1)')
    p.add_argument('--timeout', type=int, default=600, help='with --execute: seconds one cell may run (default: 600)')
    a = p.parse_args()
    NBS = a.nbs.resolve()
    build(a.out.resolve(), a.only, a.execute, a.jobs, a.timeout)
