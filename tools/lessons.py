"""Execute the course lessons in place, as Jupyter's Run All does, and check their outputs are in step with their code.

    python tools/lessons.py                # (--stale) re-execute the lessons whose code changed since their outputs
    python tools/lessons.py --all          # every lesson
    python tools/lessons.py 07 08_tta      # these lessons (number or name)
    python tools/lessons.py --check        # exit 1 listing each stale or never-executed lesson (`make check-outputs`)
    python tools/lessons.py --stats        # per lesson: words, code lines, export share, Run All seconds (Markdown)

The lessons are `nbs/NN_name.ipynb` (not the solutions, not the engine). Each runs top to bottom in a fresh
`python3` kernel with nbs/ as its working folder and no IN_TEST, so a `long_cell` prints its one line and skips,
exactly as a student's Run All. What a committed notebook must not carry is left out of it:

- Progress bars: tqdm is told to draw nothing (a hidden first cell, removed again, disables it in the kernel).
- Figures: PNG at 80 dpi (as `show_results` draws them) without matplotlib's version stamp, whatever the student's
  own matplotlib settings; a PNG over 100 kB that JPEG (quality 85) halves, a grid of photographs, is kept as JPEG.
- Execution counts, timings and other metadata: the result goes through `nbdev_clean` and tools/clean_nbs.py,
  so `make check-clean` finds nothing to change. Memory addresses (`<... at 0x7f...>`) go with them (nbdev's
  `clean_ids`), and the random names of temporary folders (`/tmp/tmpab12_x9z`) become `/tmp/tmpXXXXXXXX`;
  pandas Styler tables' random ids (`T_53e43`) are numbered in page order (`T_00001`).
- Threads: the kernel runs with one thread for torch and numpy (`OMP_NUM_THREADS=1`, as `make slow` does). A CPU
  model's float sums depend on how many threads split them, so the same lesson run with 1 and 2 threads ends
  with numbers that differ in the third decimal (10_stacking's stack 0.399 against 0.400, 11_averaging's final
  checkpoint 0.386 against 0.393): with the count fixed, the bytes no longer depend on the machine's cores.

So re-executing an unchanged lesson writes the same bytes. Each executed lesson records in its metadata
(`maskcls.code_hash`) a hash of its code cells' sources (trailing spaces and blank edges ignored, so cleaning
does not change it) and one of the committed results files it shows (`results_hash`: each `show_results('name')`),
and `--check` compares them with the notebook and results/ now: a lesson whose markdown alone changed stays
fresh. The Run All seconds go to nbs/results/run_all_seconds.csv, never into the notebook. A lesson whose cell
fails is named with the cell in one line and left as it was (written atomically, and only when all cells ran).
"""
import argparse, csv, hashlib, json, os, re, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
SECONDS = NBS / 'results' / 'run_all_seconds.csv'
KEY = 'maskcls'                 # the notebook-metadata key this tool owns (settings.ini allowed_metadata_keys)
COMMAND = 'python tools/lessons.py'
DPI = 80
JPEG_ABOVE, JPEG_QUALITY = 100_000, 85  # a PNG figure over 100 kB that JPEG halves (photographs) is kept as JPEG

# run first in the kernel, then removed with its outputs: settings for the committed page, not part of the lesson
SETUP = f"""\
%config InlineBackend.figure_formats = ['png']
%config InlineBackend.print_figure_kwargs = {{'bbox_inches': 'tight', 'dpi': {DPI}, 'metadata': {{'Software': None}}}}
import functools as _ft, tqdm.std as _tstd, tqdm.notebook as _tnb
for _c in (_tstd.tqdm, _tnb.tqdm_notebook): _c.__init__ = _ft.partialmethod(_c.__init__, disable=True)
del _ft, _tstd, _tnb, _c"""

TMP_NAME = re.compile(r'(?<![\w.-])(/tmp|/var/tmp|' + re.escape(tempfile.gettempdir()) + r')/tmp[a-z0-9_]{8}(?![\w])')


def lessons(folder=NBS):
    "The course lessons: nbs/NN_name.ipynb in numeric order."
    return sorted(p for p in Path(folder).glob('[0-9]*.ipynb') if p.is_file())


def pick(names, paths):
    "The lessons named by number (`07`), stem (`07_cv`) or file name (`nbs/07_cv.ipynb`)."
    picked, missing = [], []
    for n in names:
        stem = Path(n).name.removesuffix('.ipynb')
        hit = [p for p in paths if p.stem == stem or p.stem.startswith(stem + '_')]
        if hit: picked += [p for p in hit if p not in picked]
        else: missing.append(n)
    if missing: sys.exit(f'no lesson nbs/NN_name.ipynb matches {", ".join(missing)}; the lessons are '
                         + ' '.join(p.stem for p in paths))
    return picked


def _name(path):
    "`path` as the messages show it: relative to the repository when inside it."
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def _src(cell):
    s = cell['source']
    return ''.join(s) if isinstance(s, list) else s


def _norm(src):
    "A cell's source as the hash sees it: trailing spaces and blank first/last lines dropped."
    return '\n'.join(l.rstrip() for l in src.strip('\n').splitlines()).strip('\n')


def _code(nb):
    return [s for s in (_norm(_src(c)) for c in nb['cells'] if c['cell_type'] == 'code') if s]


def code_hash(nb):
    "Hash of the notebook's code cells' sources (not its markdown, not its outputs)."
    h = hashlib.sha256()
    for s in _code(nb): h.update(s.encode() + b'\0')
    return h.hexdigest()[:16]


def results_hash(nb, folder=NBS):
    "Hash of the committed results files the notebook shows with `show_results('name')` (its figures and tables)."
    h = hashlib.sha256()
    for name in sorted(set(re.findall(r'''show_results\(\s*['"]([\w.-]+)['"]''', '\n'.join(_code(nb))))):
        for ext in ('csv', 'json', 'png'):
            f = Path(folder) / 'results' / f'{name}.{ext}'
            data = f.read_bytes() if f.exists() else b'-'
            if ext != 'png': data = data.replace(b'\r\n', b'\n')   # a checkout with Windows line ends: the same file
            h.update(f'{name}.{ext}\0'.encode() + data + b'\0')
    return h.hexdigest()[:16]


def hashes(nb, folder=NBS):
    "What the lesson's outputs were made from, as its metadata records it."
    return {'code_hash': code_hash(nb), 'results_hash': results_hash(nb, folder)}


def staleness(path):
    "None if the lesson's outputs were made from its code (and the results files it shows) now; else why not."
    nb = json.loads(path.read_text(encoding='utf-8'))
    rec, now = nb.get('metadata', {}).get(KEY, {}), hashes(nb, path.parent)
    if 'code_hash' not in rec: return 'never executed by tools/lessons.py'
    if rec['code_hash'] != now['code_hash']: return 'its code changed since its outputs were made'
    if rec.get('results_hash') != now['results_hash']:
        return 'a results file it shows (results/) changed since its outputs were made'
    return None


def check(paths):
    stale = [(p, why) for p in paths if (why := staleness(p))]
    for p, why in stale: print(f'{_name(p)}: {why}; run: {COMMAND} {p.stem}')
    if stale:
        print(f'{len(stale)} of {len(paths)} lesson(s) stale: `make lessons` re-executes them all, then commit nbs/')
        return 1
    print(f'ok: the outputs of all {len(paths)} lessons were made from their code now')
    return 0


# -- execution --------------------------------------------------------------------------------------------------

def _cell_name(cells, i):
    first = next((l for l in _src(cells[i]).splitlines() if l.strip() and not l.startswith('#|')), '')
    return f'cell {i + 1} of {len(cells)} ({first.strip()[:50]!r})'


def _last_line(text):
    lines = [l for l in re.sub(r'\x1b\[[0-9;]*m', '', text).splitlines() if l.strip()]
    return lines[-1].strip() if lines else 'an error'


def _tidy(text):
    return TMP_NAME.sub(lambda m: m[1] + '/tmpXXXXXXXX', text)


STYLER_ID = re.compile(r'\bT_([0-9a-f]{5})(?=[_"\s{.:,])')    # pandas Styler's random table id (uuid4, 5 hex digits)


def _tidy_outputs(nb):
    "Temporary folders' random names out of every text output; pandas Styler ids numbered in page order."
    ids = {}
    def styler_id(m): return 'T_' + ids.setdefault(m[1], f'{len(ids) + 1:05d}')
    for c in nb['cells']:
        for o in c.get('outputs', []):
            if 'text' in o: o['text'] = _tidy(_src({'source': o['text']}))
            for k, v in o.get('data', {}).items():
                if k.startswith('text/'): o['data'][k] = _tidy(''.join(v) if isinstance(v, list) else v)
                if k == 'text/html': o['data'][k] = STYLER_ID.sub(styler_id, o['data'][k])


def _merge_streams(nb):
    "Consecutive outputs of one stream as one, \\r and \\b applied, as Jupyter saves them (however the kernel split them)."
    for c in nb['cells']:
        merged = []
        for o in c.get('outputs', []):
            if o['output_type'] == 'stream':
                o['text'] = _src({'source': o['text']})
                if merged and merged[-1]['output_type'] == 'stream' and merged[-1]['name'] == o['name']:
                    merged[-1]['text'] += o['text']
                    continue
            merged.append(o)
        for o in merged:
            if o['output_type'] != 'stream': continue
            t = o['text'].replace('\r\n', '\n')
            while (u := re.sub(r'[^\n]\x08', '', t)) != t: t = u
            o['text'] = re.sub(r'^.*\r(?=[^\n])', '', t, flags=re.M)     # a line rewritten after \r: its last version
        if 'outputs' in c: c['outputs'] = merged


def _smaller_figures(nb):
    "Photographic figures (grids of faces) as JPEG where that halves a PNG over JPEG_ABOVE bytes; plots stay PNG."
    import base64, io
    from PIL import Image
    for c in nb['cells']:
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if 'image/png' not in data: continue
            png = base64.b64decode(''.join(data['image/png']))
            if len(png) <= JPEG_ABOVE: continue
            im = Image.open(io.BytesIO(png))
            rgb = Image.new('RGB', im.size, 'white')
            rgb.paste(im, mask=im.convert('RGBA').getchannel('A'))
            buf = io.BytesIO()
            rgb.save(buf, 'JPEG', quality=JPEG_QUALITY, optimize=True)
            if 2 * buf.tell() <= len(png):
                del data['image/png']
                data['image/jpeg'] = base64.b64encode(buf.getvalue()).decode()
                o.get('metadata', {}).pop('image/png', None)


def finish(nb_dict, made_from):
    "The executed notebook as the bytes to commit: cleaned as `make check-clean` wants, with `hashes` recorded."
    from execnb.nbio import dict2nb, nb2str
    from nbdev.clean import clean_nb
    from nbdev.config import get_config
    sys.path.insert(0, str(ROOT / 'tools'))
    from clean_nbs import METADATA
    _merge_streams(nb_dict)
    _tidy_outputs(nb_dict)
    _smaller_figures(nb_dict)
    nb = dict2nb(json.loads(json.dumps(nb_dict)))
    cfg = get_config(path=ROOT)
    clean_nb(nb, cfg.clear_all, cfg.get('allowed_metadata_keys').split(), cfg.get('allowed_cell_metadata_keys').split(),
             cfg.clean_ids)
    nb.metadata.pop('widgets', None)     # no widget state: progress bars are off, and nothing else should need it
    nb.metadata.update(METADATA)
    nb.metadata[KEY] = dict(made_from)
    return nb2str(nb)


def execute(path, timeout=600):
    "Run lesson `path` as Run All does; return (bytes to write or None, seconds, one-line error or None)."
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError
    nb = nbformat.read(path, as_version=4)
    made_from = hashes(nb, path.parent)
    cells = list(nb.cells)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP, id='maskcls-setup'))
    at = {'i': 0}
    env = {k: v for k, v in os.environ.items() if k != 'IN_TEST'}
    env['TQDM_DISABLE'] = '1'                    # and in any process a lesson starts
    for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        env[k] = '1'                             # the same float sums on any machine: see the docstring
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}},
                            record_timing=False, store_widget_state=False,
                            extra_arguments=['--IPKernelApp.log_level=ERROR'],  # not its warning about plain TCP
                            on_cell_execute=lambda cell, cell_index: at.update(i=cell_index))
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellTimeoutError:
        return None, time.perf_counter() - start, (f'{_name(path)}: {_cell_name(cells, at["i"] - 1)} ran past the '
                                                   f'{timeout} s per-cell timeout')
    except Exception as e:  # a cell raised, or the kernel died or would not start
        where = 'the setup cell' if at['i'] == 0 else _cell_name(cells, at['i'] - 1)
        why = _last_line(str(e)) if isinstance(e, CellExecutionError) else f'{type(e).__name__}: {_last_line(str(e))}'
        return None, time.perf_counter() - start, f'{_name(path)}: {where} raised {why}'
    secs = time.perf_counter() - start
    nb.cells.pop(0)
    return finish(json.loads(nbformat.writes(nb)), made_from), secs, None


def write_atomic(path, text):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f: f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpus():
    "The CPUs this process may use (a container's share, not the host's count)."
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def read_seconds(path=SECONDS):
    if not path.exists(): return {}
    with open(path, newline='') as f: return {r['lesson']: r for r in csv.DictReader(f)}


def record_seconds(done, path=SECONDS):
    "Write the Run All seconds of the lessons just executed into `path`, keeping the other lessons' rows."
    rows = read_seconds(path)
    for stem, secs in done.items(): rows[stem] = {'lesson': stem, 'seconds': f'{secs:.0f}', 'cpus': str(_cpus())}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = 'lesson,seconds,cpus\n' + ''.join(f"{r['lesson']},{r['seconds']},{r['cpus']}\n"
                                             for _, r in sorted(rows.items()))
    write_atomic(path, text)


def run(paths, jobs=1, timeout=600, seconds_file=SECONDS):
    "Execute `paths`, write each that ran through, record their seconds; return the one-line errors."
    if not paths:
        print('nothing to execute: every lesson\'s outputs were made from its code now')
        return []
    print(f'executing {len(paths)} lesson(s): {" ".join(p.stem for p in paths)}', flush=True)
    failures, done = [], {}
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futs = {ex.submit(execute, p, timeout): p for p in paths}
        for f in as_completed(futs):
            p = futs[f]
            text, secs, err = f.result()
            changed = False
            if err: failures.append(err)
            else:
                changed = not p.exists() or p.read_text(encoding='utf-8') != text
                if changed: write_atomic(p, text)
                done[p.stem] = secs
            state = 'FAILED' if err else 'wrote' if changed else 'same'
            print(f'{state:>6} {_name(p):<28} {secs:7.1f} s  {len(text or "") / 1e3:7.0f} kB', flush=True)
    if done: record_seconds(done, seconds_file)
    return failures


# -- statistics ----------------------------------------------------------------------------------------------

def counts(nb):
    "Markdown words, code lines (non-blank lines of code cells), lines in `#| export` cells."
    w = c = e = 0
    for cell in nb['cells']:
        s = _src(cell)
        if cell['cell_type'] == 'markdown': w += len(s.split())
        elif cell['cell_type'] == 'code':
            n = len([l for l in s.splitlines() if l.strip()])
            c += n
            if re.search(r'^#\|\s*export', s, re.M): e += n
    return w, c, e


def stats(paths, seconds_file=SECONDS):
    "A Markdown table: per lesson its words, code lines, export lines and share, Run All seconds; then the totals."
    secs = read_seconds(seconds_file)
    rows, tot = [], [0, 0, 0, 0]
    for p in paths:
        w, c, e = counts(json.loads(p.read_text(encoding='utf-8')))
        s = secs.get(p.stem, {}).get('seconds', '')
        tot = [tot[0] + w, tot[1] + c, tot[2] + e, tot[3] + (int(s) if s else 0)]
        rows.append(f'| {p.stem} | {w:,} | {c:,} | {e:,} | {e / max(c, 1):.0%} | {s or "-"} |')
    cpus = sorted({r['cpus'] for r in secs.values() if r['lesson'] in {p.stem for p in paths}})
    head = ['| lesson | words | code lines | export lines | export share | Run All (s) |',
            '|---|--:|--:|--:|--:|--:|']
    timed = sum(p.stem in secs for p in paths)
    run_all = f'{tot[3]:,}' if timed == len(paths) else f'{tot[3]:,} ({timed} of {len(paths)} timed)' if timed else '-'
    total = f'| **total** | {tot[0]:,} | {tot[1]:,} | {tot[2]:,} | {tot[2] / max(tot[1], 1):.0%} | {run_all} |'
    note = f'\nRun All seconds on a CPU machine with {"/".join(cpus)} CPU(s), from nbs/results/run_all_seconds.csv.' \
        if cpus else ''
    return '\n'.join(head + rows + [total]) + '\n' + note


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('names', nargs='*', help='lessons to execute, by number or name (07, 08_tta)')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--stale', action='store_true', help='execute the stale and never-executed lessons (default)')
    mode.add_argument('--all', action='store_true', help='execute every lesson')
    mode.add_argument('--check', action='store_true', help='list the stale lessons and exit 1 if there is any')
    mode.add_argument('--stats', action='store_true', help='print the course table (Markdown)')
    p.add_argument('--jobs', type=int, default=1, help='lessons executed at once (default 1; timings then overlap)')
    p.add_argument('--timeout', type=int, default=600, help='seconds one cell may run (default 600)')
    p.add_argument('--nbs', type=Path, default=NBS, help=argparse.SUPPRESS)  # another lessons folder (the tests')
    a = p.parse_args()
    every, seconds = lessons(a.nbs), a.nbs / 'results' / SECONDS.name
    if a.names and (a.all or a.stale): p.error('name lessons, or give --all or --stale, not both')
    paths = pick(a.names, every) if a.names else every
    if a.check: sys.exit(check(paths))
    if a.stats: print(stats(paths, seconds)); sys.exit(0)
    todo = paths if a.all or a.names else [q for q in paths if staleness(q)]
    failures = run(todo, a.jobs, a.timeout, seconds)
    if failures:
        sys.exit(f'{len(failures)} lesson(s) failed and were left as they were:\n' + '\n'.join(failures))
