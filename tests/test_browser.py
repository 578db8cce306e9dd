"""What a student sees, checked in a real browser (headless Chromium driven by Selenium).

1. Two lessons opened in JupyterLab show their committed figures before anything runs, the lesson opens
   unmodified, and Run > Run All Cells runs every cell without an error. JupyterLab serves a temporary copy of
   nbs/, so the committed notebooks are never touched.
2. The course site, as `make docs` builds it from the committed notebooks: every page loads, every image shows,
   every internal link resolves, each page shows as many figures as its notebook holds, every page carries the
   contents (lessons in course order, then the engine's reference notebooks, the page itself marked), and no
   lesson page opens with import cells.
3. TensorBoard's own UI on the training lesson's run: a real server on a real run, its scalars drawn; the
   screenshot the training lesson shows (nbs/images/tensorboard_training.png) is taken here:
   `MASKCLS_UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py -k tensorboard` writes it again.
4. The pages maskcls writes (EDA, comparison, CV, runs, suspects, HPO): images, links, sortable tables.

The lessons used (LAB_LESSONS) are committed executed; one that is not (a lesson being edited) is executed in
the temporary copy first, so the tests still see figures. Chromium and chromedriver come from Debian (`make test`
installs them as root); without them these tests fail, never skip.
"""
import http.server, io, json, os, platform, re, shutil, socket, subprocess, sys, threading, time
import urllib.parse, urllib.request
from functools import partial
from pathlib import Path

import pytest
from conftest import ENV, run

pytestmark = pytest.mark.slow    # Chromium, JupyterLab, TensorBoard, a site build

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
LAB_LESSONS = ['02_eda.ipynb', '08_tta.ipynb']  # lessons with figures: both opened, the first one Run All
SCREENSHOT = ROOT / 'nbs' / 'images' / 'tensorboard_training.png'
UPDATE_SCREENSHOTS = os.environ.get('MASKCLS_UPDATE_SCREENSHOTS') == '1'


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    missing = [p.name for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f'{" and ".join(missing)} not found: install them with `apt-get install chromium chromium-driver` '
                    '(`make test` does this when run as root)', pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
              '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--hide-scrollbars', '--window-size=1400,1000', f'--user-data-dir={tmp_path_factory.mktemp("chromium")}']:
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_for(what, fn, timeout, poll=0.5):
    "Call `fn` until it returns something truthy; fail naming `what` after `timeout` seconds."
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        res = fn()
        if res: return res
        time.sleep(poll)
    pytest.fail(f'timed out after {timeout} s waiting for {what}', pytrace=False)


def stop(proc, log):
    "End a server this test started, by its pid: SIGTERM, then SIGKILL after 20 s."
    if proc.poll() is None:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def n_figures(path):
    "Outputs of the notebook at `path` that hold an image."
    cells = json.loads(Path(path).read_text())['cells']
    return sum(any(m.startswith('image/') for m in o.get('data', {}))
               for c in cells if c['cell_type'] == 'code' for o in c.get('outputs', []))


@pytest.fixture(scope='module')
def course(tmp_path_factory):
    """A copy of nbs/ in which the LAB_LESSONS hold their outputs: as committed, or (a lesson without outputs, as
    on a branch whose lessons are not executed yet) after a Run All here, its metadata kept as committed."""
    import nbformat
    from nbclient import NotebookClient
    root = tmp_path_factory.mktemp('course') / 'nbs'
    shutil.copytree(ROOT / 'nbs', root, ignore=shutil.ignore_patterns('.ipynb_checkpoints', '__pycache__'))
    for name in LAB_LESSONS:
        if n_figures(root / name): continue
        start = time.monotonic()
        nb = nbformat.read(root / name, as_version=4)
        meta = dict(nb.metadata)
        NotebookClient(nb, timeout=900, kernel_name='python3', record_timing=False,
                       resources={'metadata': {'path': str(root)}}).execute()
        nb.metadata = nbformat.from_dict(meta)
        nbformat.write(nb, root / name)
        print(f'note: {name} has no committed outputs: executed a copy ({time.monotonic() - start:.0f} s)')
        assert n_figures(root / name), f'{name} made no figure under Run All: LAB_LESSONS needs lessons with figures'
    return root


class Lab:
    "JupyterLab on a free localhost port, serving a copy of `nbs`, with its own config, runtime and settings folders."
    def __init__(self, nbs, tmp):
        self.root, self.token, self.port = tmp / 'nbs', os.urandom(16).hex(), free_port()
        shutil.copytree(nbs, self.root)  # Run All writes here, never into nbs/
        settings = tmp / 'settings' / '@jupyterlab' / 'notebook-extension'
        settings.mkdir(parents=True)  # every cell in the page, so the test sees them all
        (settings / 'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))
        env = {**ENV, 'JUPYTER_CONFIG_DIR': str(tmp / 'config'), 'JUPYTER_RUNTIME_DIR': str(tmp / 'runtime'),
               'IPYTHONDIR': str(tmp / 'ipython')}
        self.log = open(tmp / 'lab.log', 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1',
             f'--ServerApp.port={self.port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={self.token}',
             f'--ServerApp.root_dir={self.root}', '--ServerApp.allow_root=True',
             f'--LabApp.user_settings_dir={tmp / "settings"}', f'--LabApp.workspaces_dir={tmp / "workspaces"}',
             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
            cwd=tmp, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f'http://127.0.0.1:{self.port}'
        try: wait_for('JupyterLab to answer', self.up, 180)
        except BaseException:
            self.stop()
            raise

    def api(self, path):
        req = urllib.request.Request(self.url + path, headers={'Authorization': f'token {self.token}'})
        with urllib.request.urlopen(req, timeout=10) as r: return json.load(r)

    def up(self):
        if self.proc.poll() is not None:
            log = Path(self.log.name).read_text()[-3000:]
            pytest.fail(f'JupyterLab exited with code {self.proc.returncode}:\n{log}', pytrace=False)
        try: return self.api('/api/status')
        except OSError: return None

    def kernel_state(self, name):
        "Execution state of the kernel of notebook `name` ('idle', 'busy', ...), None before it has one."
        for s in self.api('/api/sessions'):
            if s['path'] == name and s.get('kernel'): return s['kernel']['execution_state']

    def stop(self): stop(self.proc, self.log)


def click_menu(driver, menu, item):
    from selenium.webdriver.common.by import By
    driver.find_element(By.XPATH, f'//div[contains(@class,"lm-MenuBar-itemLabel") and text()="{menu}"]').click()
    wait_for(f'menu item {item!r}', lambda: driver.find_elements(
        By.XPATH, f'//div[contains(@class,"lm-Menu-itemLabel") and text()="{item}"]'), 10)[0].click()


JS_CELLS = """const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell');
const stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]';
return [...cells].map(c => ({
  prompt: c.querySelector('.jp-InputArea-prompt').textContent.trim(),
  errors: [...c.querySelectorAll(stderr)].map(o => o.textContent)
}));"""
# the figures in the output areas of the notebook in view: loaded, with a size, and on the page
JS_LAB_FIGURES = """const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
return panel ? [...panel.querySelectorAll('.jp-OutputArea-output img')].map(i => {
  const r = i.getBoundingClientRect();
  return {ok: i.complete && i.naturalWidth > 0, w: r.width, h: r.height,
          visible: getComputedStyle(i).visibility !== 'hidden' && i.offsetParent !== null};
}) : [];"""


def open_in_lab(browser, lab, name):
    "Open notebook `name` in JupyterLab; return its code cells once all are on the page and its kernel is idle."
    from selenium.webdriver.common.by import By
    n_code = sum(c['cell_type'] == 'code' for c in json.loads((lab.root / name).read_text())['cells'])
    browser.get(f'{lab.url}/lab/tree/{name}?token={lab.token}')
    def opened(): return len(browser.execute_script(JS_CELLS)) == n_code
    wait_for(f'{name} to open with its {n_code} code cells', opened, 180)
    wait_for(f'the kernel of {name} to start', lambda: lab.kernel_state(name) == 'idle', 180)
    def kernel_shown():
        names = browser.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-KernelName')
        return names and 'No Kernel' not in names[0].text
    wait_for(f'the toolbar of {name} to show the kernel', kernel_shown, 60)
    return n_code


def check_figures_shown(browser, lab, name):
    "The notebook in view shows every figure its file holds, before anything runs."
    made = n_figures(lab.root / name)
    def shown():
        figs = browser.execute_script(JS_LAB_FIGURES)
        return [f for f in figs if f['ok'] and f['visible'] and f['w'] > 50 and f['h'] > 50] if len(figs) >= made else []
    try: figs = wait_for(f'{name} to show its {made} committed figure(s)', shown, 60)
    except pytest.fail.Exception:
        pytest.fail(f'{name} holds {made} figure(s), JupyterLab shows {browser.execute_script(JS_LAB_FIGURES)} '
                    'before running anything', pytrace=False)
    assert len(figs) >= made > 0, f'{name}: {made} figure(s) in the file, {len(figs)} shown'
    return len(figs)


def test_lessons_in_jupyterlab(browser, course, tmp_path):
    """Two lessons show their committed figures as they open, before any cell runs; the first opens unmodified
    and Run All Cells runs every cell of it without an error or a warning."""
    from selenium.webdriver.common.by import By
    start = time.monotonic()
    lab = Lab(course, tmp_path)
    try:
        for name in LAB_LESSONS[::-1]:  # the one Run All runs last, so its tab is in view
            open_in_lab(browser, lab, name)
            shown = check_figures_shown(browser, lab, name)
            print(f'{name}: {shown} committed figure(s) shown in JupyterLab before running anything')
        name = LAB_LESSONS[0]  # in view
        n_code = sum(c['cell_type'] == 'code' for c in json.loads((lab.root / name).read_text())['cells'])
        time.sleep(2)  # JupyterLab writes the kernel's spec and language_info into the notebook just after it connects
        dirty = browser.find_elements(By.CSS_SELECTOR, '.lm-TabBar-tab.jp-mod-current.jp-mod-dirty')
        committed = json.loads((lab.root / name).read_text())['metadata']
        if committed.get('language_info', {}).get('version') == platform.python_version():
            assert not dirty, f'{name} shows as modified right after opening: JupyterLab changed its metadata'
        else:  # on another Python only language_info.version may differ: save and compare
            click_menu(browser, 'File', 'Save Notebook')
            wait_for('the save', lambda: not browser.find_elements(By.CSS_SELECTOR, '.lm-TabBar-tab.jp-mod-dirty'), 30)
            saved = json.loads((lab.root / name).read_text())['metadata']
            saved.get('language_info', {}).pop('version', None), committed.get('language_info', {}).pop('version', None)
            assert saved == committed, f'JupyterLab changed {name}\'s metadata on opening: {committed} -> {saved}'
            print(f'note: the notebooks record Python {committed["language_info"]["version"]!r}, this is '
                  f'{platform.python_version()}: JupyterLab marks them modified for the version alone')

        run_start = time.monotonic()
        click_menu(browser, 'Run', 'Run All Cells')
        def finished():  # Run All stops at a cell that raises, leaving the cells after it unrun
            cells = browser.execute_script(JS_CELLS)
            ran = [re.fullmatch(r'\[\d+\]:', c['prompt']) for c in cells]
            return (lab.kernel_state(name) == 'idle' and not any(c['prompt'] == '[*]:' for c in cells)
                    and (all(ran) or any(c['errors'] for c in cells)) and cells)
        cells = wait_for(f'Run All Cells to finish {name}', finished, 900, poll=2)
        errors = [(i, e) for i, c in enumerate(cells) for e in c['errors'] if re.search('Traceback|Error|Warning', e)]
        assert not errors, f'{name}: code cell {errors[0][0] + 1} shows an error or warning:\n{errors[0][1][-2000:]}'
        unrun = [i + 1 for i, c in enumerate(cells) if not re.fullmatch(r'\[\d+\]:', c['prompt'])]
        assert not unrun, f'{name}: code cells {unrun} have no execution count after Run All Cells'
        assert len(cells) == n_code
        check_figures_shown(browser, lab, name)  # and the figures are drawn again
        print(f'JupyterLab Run All of {name}: {len(cells)} code cells in {time.monotonic() - run_start:.0f} s; '
              f'{time.monotonic() - start:.0f} s in all')
    finally:
        lab.stop()


# The course site, built from the notebooks as committed (the LAB_LESSONS with their outputs).
@pytest.fixture(scope='module')
def site(course, tmp_path_factory):
    "The whole site built by tools/build_docs.py from `course`; the training lesson shows the TensorBoard screenshot."
    import nbformat
    training = course / '06_training.ipynb'
    nb = nbformat.read(training, as_version=4)
    shot = 'images/tensorboard_training.png'
    if not any(shot in c.source for c in nb.cells if c.cell_type == 'markdown'):  # until the lesson shows it
        nb.cells.append(nbformat.v4.new_markdown_cell(f'![TensorBoard on the lesson\'s run]({shot})'))
        nbformat.write(nb, training)
    out = tmp_path_factory.mktemp('site')
    start = time.monotonic()
    r = subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--nbs', str(course), '--out', str(out)],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f'tools/build_docs.py failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    print(r.stdout.splitlines()[-1], f'(the test saw {time.monotonic() - start:.0f} s)')
    assert 'warning' not in r.stdout, f'tools/build_docs.py warns:\n{r.stdout}'
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(folder):
    "Serve `folder` over HTTP on a free localhost port, as a web host would; returns (url, server)."
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{server.server_address[1]}', server


JS_PAGE = """const main = document.querySelector('main');
const codeLines = e => e.textContent.split('\\n').map(l => l.trim()).filter(l => l && !l.startsWith('#'));
return {
  title: document.title,
  figures: +document.querySelector('meta[name=figures]').content,
  images: [...document.querySelectorAll('img')].map(i => ({src: i.src.slice(0, 60), markdown: !!i.closest('.text_cell_render'),
                                                          ok: i.complete && i.naturalWidth > 0})),
  svgs: document.querySelectorAll('main .output_area svg').length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  bodyLinks: [...main.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  prev: document.querySelector('a[rel=prev]')?.getAttribute('href'),
  next: document.querySelector('a[rel=next]')?.getAttribute('href'),
  contents: [...document.querySelectorAll('nav.contents ol')].map(ol => [...ol.querySelectorAll('a')].map(a => a.href)),
  current: [...document.querySelectorAll('nav.contents a[aria-current=page]')].map(a => a.href),
  first: main.firstElementChild?.querySelector('h1') ? 'title' : main.firstElementChild?.textContent.slice(0, 200),
  importCells: [...main.querySelectorAll('.input_area')].map(codeLines)
    .filter(ls => ls.length && ls.every(l => /^(import |from \\S+ import )/.test(l))).map(ls => ls.join('; ').slice(0, 120)),
};"""


def check_site(browser, folder):
    "Open every page of the site in `folder`; return ({page: what the browser saw}, url) after checking it."
    url, server = serve(folder)
    try:
        pages = sorted(p.relative_to(folder).as_posix() for p in folder.rglob('*.html'))
        assert 'index.html' in pages, f'{folder} has no index.html'
        seen = {}
        for page in pages:
            browser.get(f'{url}/{page}')
            wait_for(f'{page} to load', lambda: browser.execute_script('return document.readyState') == 'complete', 60)
            seen[page] = info = browser.execute_script(JS_PAGE)
            assert info['title'], f'{page} has no title'
            broken = [i['src'] for i in info['images'] if not i['ok']]
            assert not broken, f'{page}: {len(broken)} image(s) do not show: {broken[:3]}'
            shown = sum(i['ok'] for i in info['images'] if not i['markdown']) + info['svgs']
            made = info['figures']
            assert shown >= made, f'{page}: its notebook holds {made} figure(s), the page shows {shown}'
            assert info['first'] == 'title', f'{page} does not open with its title but with {info["first"]!r}'
            assert not info['importCells'], f'{page} shows cells that only import: {info["importCells"][:2]}'
            assert info['current'] == [f'{url}/{page}'] or page == 'index.html' or '/solutions/' in f'/{page}', \
                f'{page}: the contents marks {info["current"]} as the current page'
        for page, info in seen.items():  # every internal link leads to a page of the site (and to an anchor on it)
            for link in info['links']:
                if not link.startswith(url): continue
                target, _, anchor = link[len(url) + 1:].partition('#')
                assert target in seen, f'{page} links to {target}, which the site does not have'
                assert not anchor or urllib.parse.unquote(anchor) in seen[target]['ids'], \
                    f'{page} links to a missing anchor: {link}'
        return seen, url
    finally:
        server.shutdown()


def test_site_pages(browser, course, site):
    start = time.monotonic()
    seen, url = check_site(browser, site)
    lessons = [p.stem + '.html' for p in sorted(course.glob('[0-9][0-9]_*.ipynb'))]
    engine = [f'engine/{p.stem}.html' for p in sorted((course / 'engine').glob('[0-9][0-9]_*.ipynb'))]
    missing = [p for p in ['index.html', *lessons, *engine] if p not in seen]
    assert not missing, f'the site has no page for {missing}'
    for page in ['index.html', lessons[-1], engine[0]]:
        got = [[link[len(url) + 1:] for link in ol] for ol in seen[page]['contents']]
        assert got == [lessons, engine], (f'{page}: the contents should list the lessons in course order, then the '
                                          f'engine\'s reference notebooks; it lists {got}')
    for name in LAB_LESSONS:
        page = name.replace('.ipynb', '.html')
        made = n_figures(course / name)
        assert seen[page]['figures'] == made > 0, f'{page} records {seen[page]["figures"]} figures, {name} holds {made}'
    shots = [i for i in seen['06_training.html']['images'] if i['markdown']]
    assert shots and all(i['ok'] and i['src'].startswith('data:image/png') for i in shots), \
        f'06_training.html does not show the TensorBoard screenshot embedded: {shots}'
    body = {(p, link[len(url) + 1:].partition('#')[0])
            for p, i in seen.items() for link in i['bodyLinks'] if link.startswith(url)}
    kinds = {'lesson -> engine': [(a, b) for a, b in body if a in lessons and b in engine],
             'engine -> lesson': [(a, b) for a, b in body if a in engine and b in lessons]}
    assert all(kinds.values()), f'the pages\' text has no links between notebooks of these kinds: {kinds}'
    chain = [(seen[p]['prev'], seen[p]['next']) for p in lessons]
    want = [(a, b) for a, b in zip([None, *lessons[:-1]], [*lessons[1:], None])]
    assert chain == want, f'previous/next links out of course order: {chain}'
    assert seen['index.html']['next'] == lessons[0]
    print(f'site: {len(seen)} pages checked in {time.monotonic() - start:.0f} s')


# TensorBoard's own UI on the training lesson's run (06_training: 40 synthetic people, the tiny CNN at 64 x 48)
TB_TAGS = ['train/loss', 'valid/f1']   # what the lesson points at: the training loss falls, the macro F1 it selects by
TB_RUN = 'tiny_cnn/tb'                 # runs/tiny_cnn, its events in tb/
JS_TB_CARDS = """return [...document.querySelectorAll('scalar-card')].map(c => {
  const view = c.querySelector('line-chart .series-view'), r = view?.getBoundingClientRect();
  const row = c.querySelector('tb-data-table-content-row');
  return {tag: c.querySelector('.title, tb-truncated-path')?.textContent.trim(),
          rect: r && r.width > 0 ? [r.left, r.top, r.right, r.bottom] : null,
          row: row ? [...row.querySelectorAll('tb-data-table-content-cell')].map(d => d.textContent.trim()) : [],
          color: [...c.querySelectorAll('tb-data-table-content-row [style*="background"], tb-data-table-content-row circle')]
                   .map(e => getComputedStyle(e)[e.tagName === 'circle' ? 'fill' : 'backgroundColor'])[0]
                 || [...document.querySelectorAll('.run-color-swatch')].map(e => getComputedStyle(e).backgroundColor)[0]
                 || null,
          bottom: c.getBoundingClientRect().bottom};
});"""


class TensorBoard:
    "`python -m tensorboard.main` on a free localhost port, reading `logdir`; its output in `log`."
    def __init__(self, logdir, log):
        self.port, self.log = free_port(), open(log, 'w')
        self.proc = subprocess.Popen([sys.executable, '-m', 'tensorboard.main', '--logdir', str(logdir), '--host',
                                      '127.0.0.1', '--port', str(self.port), '--load_fast=false'],
                                     env=ENV, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f'http://127.0.0.1:{self.port}'

    def runs(self):
        if self.proc.poll() is not None:
            pytest.fail(f'TensorBoard exited with code {self.proc.returncode}:\n{Path(self.log.name).read_text()[-3000:]}',
                        pytrace=False)
        try:
            with urllib.request.urlopen(self.url + '/data/runs', timeout=10) as r: return json.load(r)
        except OSError: return None

    def stop(self): stop(self.proc, self.log)


def drawn_pixels(png, rect, color, tol=40):
    "Pixels of the screenshot `png` inside `rect` (left, top, right, bottom) within `tol` of the CSS colour `color`."
    import numpy as np
    from PIL import Image
    want = np.array([int(v) for v in re.findall(r'\d+', color)[:3]])
    im = np.asarray(Image.open(io.BytesIO(png)).convert('RGB')).astype(int)
    l, t, r, b = (int(round(v)) for v in rect)
    return int((np.abs(im[t:b, l:r] - want).max(-1) <= tol).sum())


def test_tensorboard_screenshot(browser, tmp_path):
    """Train the training lesson's run from the command line, open TensorBoard on it, see its scalars drawn, and take
    the screenshot the lesson shows (written to nbs/images/ with MASKCLS_UPDATE_SCREENSHOTS=1)."""
    import numpy as np
    from PIL import Image
    start = time.monotonic()
    run('synth', '--out', 'data', '--people', 40, '--eval-people', 0, '--seed', 0, '--workers', 1, cwd=tmp_path)
    epochs = 6
    run('train', '--data', 'data', '--model', 'tiny', '--img-size', 64, 48, '--epochs', epochs, '--batch-size', 32,
        '--old-age', 58, '--seed', 0, '--device', 'cpu', '--workers', 0, '--tensorboard', '--out', 'runs/tiny_cnn',
        cwd=tmp_path)
    trained = time.monotonic()
    tb = TensorBoard(tmp_path / 'runs', tmp_path / 'tensorboard.log')
    size = browser.get_window_size()
    try:
        wait_for(f'TensorBoard to list the run {TB_RUN}', lambda: TB_RUN in (tb.runs() or []), 180, poll=1)
        # a plain view of the two curves: no smoothing (the lesson's numbers as logged), the settings pane shut
        browser.get(tb.url + '/robots.txt')
        browser.execute_script("localStorage.setItem('_tb_global_settings', arguments[0])", json.dumps(
            dict(scalarSmoothing=0, ignoreOutliers=False, timeSeriesSettingsPaneOpened=False)))
        browser.set_window_size(1000, 900)
        tag_filter = '|'.join(f'^{t}$' for t in TB_TAGS)
        browser.get(f'{tb.url}/?tagFilter={urllib.parse.quote(tag_filter)}#timeseries')

        last = {}
        def drawn():  # every card shows the last epoch's value and its curve in the run's colour
            last['cards'] = cards = {c['tag']: c for c in browser.execute_script(JS_TB_CARDS)}
            if sorted(cards) != sorted(TB_TAGS): return None
            if not all(c['rect'] and c['color'] and str(epochs) in c['row'] for c in cards.values()): return None
            png = browser.get_screenshot_as_png()
            last['pixels'] = pixels = {t: drawn_pixels(png, c['rect'], c['color']) for t, c in cards.items()}
            return (cards, png, pixels) if min(pixels.values()) > 100 else None
        try: cards, png, pixels = wait_for(f'TensorBoard to draw {TB_TAGS} of {TB_RUN}', drawn, 120, poll=2)
        except pytest.fail.Exception:
            pytest.fail(f'TensorBoard did not draw the scalars {TB_TAGS} of run {TB_RUN} (epoch {epochs}): the page '
                        f'shows the cards {last.get("cards")}, with {last.get("pixels")} pixels of the run\'s colour '
                        'in their charts', pytrace=False)
        assert all(TB_RUN in c['row'] for c in cards.values()), f'the cards name another run: {cards}'
        im = Image.open(io.BytesIO(png)).convert('RGB')
        bottom = min(im.height, int(max(c['bottom'] for c in cards.values())) + 16)
        im = im.crop((0, 0, min(im.width, 1000), bottom))  # the header and the two cards, nothing below
        out = SCREENSHOT if UPDATE_SCREENSHOTS else tmp_path / SCREENSHOT.name
        out.parent.mkdir(parents=True, exist_ok=True)
        im.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print(f'TensorBoard screenshot {out.name}: {im.width} x {im.height}, {out.stat().st_size / 1e3:.0f} kB, '
              f'pixels of each curve {pixels}; {trained - start:.0f} s to train, '
              f'{time.monotonic() - trained:.0f} s in TensorBoard')
    finally:
        browser.set_window_size(size['width'], size['height'])
        tb.stop()
    assert SCREENSHOT.exists(), (f'{SCREENSHOT.relative_to(ROOT)} is missing: write it with '
                                 'MASKCLS_UPDATE_SCREENSHOTS=1 pytest tests/test_browser.py -k tensorboard')
    committed = Image.open(SCREENSHOT)
    assert committed.format == 'PNG', f'{SCREENSHOT.name} is a {committed.format}, not a PNG'
    committed.load()
    w, h = committed.size
    kb = SCREENSHOT.stat().st_size / 1e3
    assert 800 <= w <= 1200 and 300 <= h <= 1000 and kb < 200, \
        f'{SCREENSHOT.name} is {w} x {h} pixels, {kb:.0f} kB: expected about 1000 px wide and under 200 kB'
    assert len(np.unique(np.asarray(committed.convert('RGB')).reshape(-1, 3), axis=0)) > 8, \
        f'{SCREENSHOT.name} is nearly blank'


# The pages maskcls writes (issue 13): EDA, comparison, a CV folder's index, the runs table. Each opens with every
# image showing and every link resolving, and its tables sort when a header is clicked.
JS_REPORT = """return {
  title: document.title,
  images: [...document.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0})),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  tables: [...document.querySelectorAll('table.sortable')].map(t => t.tBodies[0].rows.length),
};"""
JS_COLUMN = """const t = document.querySelectorAll('table.sortable')[arguments[0]];
return [...t.tBodies[0].rows].map(r => r.cells[arguments[1]].getAttribute('data-v') ?? r.cells[arguments[1]].textContent);"""


@pytest.fixture(scope='module')
def report_pages(tmp_path_factory):
    "A folder holding a data set and every kind of page, written by the library's own functions."
    import numpy as np
    import pandas as pd
    from maskcls.reports import write_compare_report
    from maskcls.config import Config
    from maskcls.cv import run_cv
    from maskcls.eda_report import write_eda
    from maskcls.experiments import runs_table, write_runs_page
    from maskcls.hpo_workers import tune
    from maskcls.layout import read_train
    from maskcls.files import new_run_dir
    from maskcls.reports import write_suspects
    from maskcls.synth import make_dataset
    from maskcls.train import train_run
    from dataclasses import replace
    root = tmp_path_factory.mktemp('pages')
    make_dataset(root / 'data', people=12, eval_people=4, seed=3, workers=1, progress=False)
    df = read_train(root / 'data')
    write_eda(df, root / 'eda')
    gt = pd.read_csv(root / 'data' / 'eval' / 'gt.csv')
    rng = np.random.default_rng(0)
    gt.to_csv(root / 'a.csv', index=False)
    gt.assign(ans=np.where(rng.random(len(gt)) < 0.4, rng.integers(0, 18, len(gt)), gt['ans'])).to_csv(
        root / 'b.csv', index=False)
    write_compare_report(root / 'a.csv', root / 'b.csv', root / 'data' / 'eval', root / 'compare', n=6)
    cfg = Config(data=str(root / 'data'), img_size=(32, 24), epochs=1, batch_size=16, folds=2, model='tiny',
                 cache_dir=str(root / 'cache'), tensorboard=False)
    run_cv(cfg, df, root / 'runs' / 'cv', progress=False)
    people = sorted(df['person'].unique())
    train_run(replace(cfg, lr=0.01), df[df.person.isin(people[:9])], df[df.person.isin(people[9:])],
              new_run_dir(root / 'runs' / 'train'), progress=False)
    write_runs_page(runs_table(root / 'runs'), root / 'report')
    write_suspects(root / 'runs' / 'cv', root / 'suspects', n=3)
    tune(cfg, df, dict(lr=('log', 1e-3, 1e-2)), n_trials=3, out=root / 'hpo', sampler='random', pruner=False)
    return root


def check_sorts(browser, page, n_rows):
    "Click a numeric header of a sortable table twice: ascending, then descending, empty cells last."
    from selenium.webdriver.common.by import By
    tables = browser.find_elements(By.CSS_SELECTOR, 'table.sortable')
    heads = [t.find_elements(By.CSS_SELECTOR, 'thead th') for t in tables]
    numeric = [[i for i, h in enumerate(hs) if 'num' in (h.get_attribute('class') or '')] for hs in heads]
    k = next((i for i, n in enumerate(n_rows) if n >= 2 and numeric[i]), None)
    assert k is not None, f'{page}: no sortable table with a numeric column and 2 or more rows'
    heads, col = heads[k], numeric[k][-1]
    for order in ('ascending', 'descending'):
        heads[col].click()
        assert heads[col].get_attribute('aria-sort') == order
        vals = browser.execute_script(JS_COLUMN, k, col)
        filled = [v for v in vals if v != '']
        assert vals == filled + [''] * (len(vals) - len(filled)), f'{page}: empty cells not last: {vals}'
        key = [float(v) for v in filled]                      # data-v holds the exact number
        assert key == sorted(key, reverse=order == 'descending'), f'{page}: column {col} not {order}: {vals}'


def test_report_pages(browser, report_pages):
    url, server = serve(report_pages)
    try:
        for page in ('eda/index.html', 'compare/index.html', 'runs/cv/index.html', 'report/index.html',
                     'suspects/index.html', 'hpo/index.html'):
            browser.get(f'{url}/{page}')
            wait_for(f'{page} to load', lambda: browser.execute_script('return document.readyState') == 'complete', 30)
            info = browser.execute_script(JS_REPORT)
            assert 'maskcls' in info['title'], f'{page}: title {info["title"]!r}'
            broken = [i['src'] for i in info['images'] if not i['ok']]
            assert not broken, f'{page}: {len(broken)} image(s) do not show: {broken[:3]}'
            for link in info['links']:
                assert link.startswith(url), f'{page} links outside the folder: {link}'
                with urllib.request.urlopen(link.partition('#')[0], timeout=10) as r:
                    assert r.status == 200, f'{page}: broken link {link}'
            check_sorts(browser, page, info['tables'])
    finally:
        server.shutdown()
