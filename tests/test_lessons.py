"""tools/lessons.py, which commits the lessons executed: the staleness check, a failing cell, deterministic bytes.

Each test works on tiny notebooks in a temporary folder (`--nbs`), never on the real lessons.
"""
import base64, importlib.util, io, json, subprocess, sys

import nbformat
import numpy as np
from PIL import Image

from conftest import ENV, ROOT

spec = importlib.util.spec_from_file_location('lessons_tool', ROOT / 'tools' / 'lessons.py')
lessons = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lessons)

METADATA = json.loads((ROOT / 'nbs' / '01_competition.ipynb').read_text())['metadata']
METADATA.pop(lessons.KEY, None)


class md(str): "A markdown cell's source (any other string is a code cell's)."


def notebook(path, *cells, executed=False):
    "Write a notebook of `cells` to `path`, with its code hash recorded if `executed`."
    cs = [nbformat.v4.new_markdown_cell(c) if isinstance(c, md) else nbformat.v4.new_code_cell(c) for c in cells]
    for i, c in enumerate(cs): c.id = f'cell{i}'
    nb = nbformat.v4.new_notebook(cells=cs, metadata=dict(METADATA))
    if executed: nb.metadata[lessons.KEY] = lessons.hashes(nb, path.parent)
    nbformat.write(nb, path)
    return path


def edit(path, i, source):
    nb = json.loads(path.read_text())
    nb['cells'][i]['source'] = source
    path.write_text(json.dumps(nb, indent=1))


def tool(*args, folder):
    return subprocess.run([sys.executable, str(ROOT / 'tools' / 'lessons.py'), *args, '--nbs', str(folder)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def test_check_flags_code_changes_only(tmp_path):
    a = notebook(tmp_path / '01_a.ipynb', md('# A\n> a lesson'), 'x = 1\nprint(x)', md('Some prose.'), executed=True)
    b = notebook(tmp_path / '02_b.ipynb', md('# B\n> b lesson'), 'y = 2', executed=True)
    r = tool('--check', folder=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('ok:'), r.stdout + r.stderr
    edit(a, 2, 'Other prose, more words.')                 # markdown alone: the outputs still belong to the code
    edit(a, 1, ['x = 1   \n', 'print(x)\n', '\n'])        # trailing spaces and blank lines: cleaning noise
    assert lessons.staleness(a) is None
    edit(b, 1, 'y = 3')                                    # code: the outputs are stale
    notebook(tmp_path / '03_c.ipynb', md('# C\n> never run'), 'z = 3')
    r = tool('--check', folder=tmp_path)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout                       # one line per stale lesson, then the summary
    assert '02_b.ipynb: its code changed' in lines[0] and lines[0].endswith('run: python tools/lessons.py 02_b')
    assert '03_c.ipynb: never executed' in lines[1] and '2 of 3 lesson(s) stale' in lines[2]
    assert '01_a' not in r.stdout


def test_check_sees_a_changed_results_file(tmp_path):
    (tmp_path / 'results').mkdir()
    (tmp_path / 'results' / 'exp.csv').write_text('a,b\n1,2\n')
    nb = notebook(tmp_path / '01_a.ipynb', md('# A\n> a lesson'), "show_results('exp')", executed=True)
    assert lessons.staleness(nb) is None
    (tmp_path / 'results' / 'exp.csv').write_text('a,b\n1,3\n')   # a rerun of the experiment: the page shows old numbers
    assert lessons.staleness(nb).startswith('a results file it shows')


def test_failing_cell_leaves_the_lesson_as_it_was(tmp_path):
    nb = notebook(tmp_path / '01_bad.ipynb', md('# Bad\n> fails'), 'x = 1', 'y = x / 0', 'print(y)')
    before = nb.read_bytes()
    r = tool('01', folder=tmp_path)
    assert r.returncode == 1
    assert nb.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ['01_bad.ipynb']   # no temporary file left behind
    err = [l for l in r.stderr.splitlines() if 'IPKernelApp' not in l and l.strip()]
    assert err[0] == '1 lesson(s) failed and were left as they were:'
    assert len(err) == 2, r.stderr                         # then one line for the lesson
    assert '01_bad.ipynb: cell 3 of 4' in err[1] and "'y = x / 0'" in err[1] and 'ZeroDivisionError' in err[1]


def test_execution_is_deterministic_and_clean(tmp_path):
    nb = notebook(tmp_path / '01_tiny.ipynb', md('# Tiny\n> runs twice'),
                  'import os, tempfile\nimport matplotlib.pyplot as plt\nfrom maskcls.progress import progress_bar',
                  "for _ in progress_bar(range(3), desc='steps'): pass\nprint('in', os.path.basename(os.getcwd()))",
                  'print(tempfile.mkdtemp(), object())',
                  'plt.figure(figsize=(3, 2)); plt.plot([1, 3, 2]); plt.show()',
                  "os.environ.get('IN_TEST')")
    r = tool('--all', folder=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    first = nb.read_bytes()
    r = tool('01_tiny', folder=tmp_path)
    assert r.returncode == 0 and 'same' in r.stdout, r.stdout + r.stderr
    assert nb.read_bytes() == first                         # the same bytes: no timings, counts, ids, addresses
    out = json.loads(first)
    assert lessons.staleness(nb) is None and tool('--check', folder=tmp_path).returncode == 0
    cells = out['cells']
    assert [o['text'] for o in cells[2]['outputs']] == [f'in {tmp_path.name}\n']   # run in the lesson's folder, no bar
    assert cells[3]['outputs'][0]['text'] == '/tmp/tmpXXXXXXXX <object object>\n'
    png = base64.b64decode(cells[4]['outputs'][0]['data']['image/png'])
    w, h = Image.open(io.BytesIO(png)).size
    assert w < 3 * 90 and h < 2 * 90                       # 80 dpi (bbox 'tight' trims or pads a little)
    assert b'Software' not in png and b'atplotlib' not in png
    assert cells[5]['outputs'] == []                       # no IN_TEST, as under Jupyter
    assert all(c.get('execution_count') is None and not c['metadata'] for c in cells if c['cell_type'] == 'code')
    assert set(out['metadata']) == {'kernelspec', 'language_info', lessons.KEY}
    assert lessons.finish(json.loads(first), out['metadata'][lessons.KEY]) == first.decode()  # cleaned already
    seconds = (tmp_path / 'results' / 'run_all_seconds.csv').read_text().splitlines()
    assert seconds[0] == 'lesson,seconds,cpus' and seconds[1].startswith('01_tiny,')


def test_photographs_become_jpeg_plots_stay_png():
    def png(a):
        buf = io.BytesIO(); Image.fromarray(a).save(buf, 'PNG')
        return base64.b64encode(buf.getvalue()).decode()
    y, x = np.mgrid[0:400, 0:600]
    grain = np.random.default_rng(0).integers(0, 16, (400, 600, 3))
    photo = (np.stack([x * 255 // 600, y * 255 // 400, (x + y) * 255 // 1000], -1) + grain).clip(0, 255)
    photo = photo.astype(np.uint8)                           # shades with grain: big as PNG, small as JPEG
    plot = np.full((400, 600, 3), 255, np.uint8); plot[200, :] = 0
    nb = {'cells': [{'cell_type': 'code', 'outputs': [{'data': {'image/png': png(photo), 'text/plain': 'fig'}},
                                                      {'data': {'image/png': png(plot), 'text/plain': 'fig'}}]}]}
    assert len(base64.b64decode(nb['cells'][0]['outputs'][0]['data']['image/png'])) > lessons.JPEG_ABOVE
    lessons._smaller_figures(nb)
    photo_out, plot_out = nb['cells'][0]['outputs']
    assert set(photo_out['data']) == {'image/jpeg', 'text/plain'}
    assert set(plot_out['data']) == {'image/png', 'text/plain'}


def test_streams_merge_as_jupyter_saves_them():
    out = [{'output_type': 'stream', 'name': 'stdout', 'text': ['a\n', 'b']},    # one print split in two messages
           {'output_type': 'stream', 'name': 'stdout', 'text': 'c\r\n10%\r50%\r100%\nxy\x08z\n'},
           {'output_type': 'display_data', 'data': {}, 'metadata': {}},
           {'output_type': 'stream', 'name': 'stdout', 'text': 'd\n'},
           {'output_type': 'stream', 'name': 'stderr', 'text': 'e\n'}]
    nb = {'cells': [{'cell_type': 'code', 'outputs': out}]}
    lessons._merge_streams(nb)
    assert [o.get('text') for o in nb['cells'][0]['outputs']] == ['a\nbc\n100%\nxz\n', None, 'd\n', 'e\n']


def test_stats_counts_as_share_py(tmp_path):
    notebook(tmp_path / '01_a.ipynb', md('# A\n> five words here'), '#| export\ndef f(): pass\n\nx = 1', 'f()\n')
    (tmp_path / 'results').mkdir()
    (tmp_path / 'results' / 'run_all_seconds.csv').write_text('lesson,seconds,cpus\n01_a,12,2\n')
    table = lessons.stats(lessons.lessons(tmp_path), tmp_path / 'results' / 'run_all_seconds.csv')
    assert '| 01_a | 6 | 4 | 3 | 75% | 12 |' in table
    assert '| **total** | 6 | 4 | 3 | 75% | 12 |' in table and '2 CPU(s)' in table


def test_styler_ids_numbered_in_page_order():
    nb = {'cells': [{'cell_type': 'code', 'outputs': [{'output_type': 'display_data', 'data': {'text/html':
          '<style>#T_53e43_row0_col0 {color: red}</style><table id="T_53e43"><td id="T_53e43_row0_col0">1</td>'}}]},
          {'cell_type': 'code', 'outputs': [{'output_type': 'execute_result', 'data': {'text/html':
          '<table id="T_a1b2c">x</table><table id="T_53e43">y</table>'}}]}]}
    lessons._tidy_outputs(nb)
    assert nb['cells'][0]['outputs'][0]['data']['text/html'] == \
        '<style>#T_00001_row0_col0 {color: red}</style><table id="T_00001"><td id="T_00001_row0_col0">1</td>'
    assert nb['cells'][1]['outputs'][0]['data']['text/html'] == '<table id="T_00002">x</table><table id="T_00001">y</table>'
