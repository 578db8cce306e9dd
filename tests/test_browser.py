"""What a student sees, checked in a real browser (headless Chromium driven by Selenium).

1. A lesson opened in JupyterLab shows as unmodified, and Run > Run All Cells runs every cell
   without an error. JupyterLab serves a temporary copy of nbs/, so the committed notebooks are
   never touched.
2. The course site: every page loads, every image shows, every internal link resolves, and each
   page shows as many figures as its notebook made. A small site (01_competition, 02_eda and the
   index) is built for the test; when `make docs` has built `_docs/`, every page there is checked too.

Chromium and chromedriver come from Debian (`make test` installs them as root); without them
these tests fail, never skip.
"""
import http.server, json, os, platform, re, shutil, socket, subprocess, sys, threading, time
import urllib.parse, urllib.request
from functools import partial
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow    # Chromium, JupyterLab, a site build

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
LESSON = '01_competition.ipynb'  # a quick lesson: runs in seconds on a CPU


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
              '--window-size=1400,1000', f'--user-data-dir={tmp_path_factory.mktemp("chromium")}']:
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


class Lab:
    "JupyterLab on a free localhost port, serving a copy of nbs/, with its own config, runtime and settings folders."
    def __init__(self, tmp):
        self.root, self.token, self.port = tmp / 'nbs', os.urandom(16).hex(), free_port()
        shutil.copytree(ROOT / 'nbs', self.root)
        settings = tmp / 'settings' / '@jupyterlab' / 'notebook-extension'
        settings.mkdir(parents=True)  # every cell in the page, so the test sees them all
        (settings / 'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))
        env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp / 'config'), 'JUPYTER_RUNTIME_DIR': str(tmp / 'runtime'),
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
        wait_for('JupyterLab to answer', self.up, 120)

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

    def stop(self):
        self.proc.terminate()
        try: self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.stop()


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


def test_lesson_runs_all_in_jupyterlab(browser, lab):
    from selenium.webdriver.common.by import By
    start = time.monotonic()
    n_code = sum(c['cell_type'] == 'code' for c in json.loads((lab.root / LESSON).read_text())['cells'])
    browser.get(f'{lab.url}/lab/tree/{LESSON}?token={lab.token}')
    def opened(): return len(browser.execute_script(JS_CELLS)) == n_code
    wait_for(f'{LESSON} to open with its {n_code} code cells', opened, 120)
    wait_for('the kernel to start', lambda: lab.kernel_state(LESSON) == 'idle', 120)
    def kernel_shown():
        names = browser.find_elements(By.CSS_SELECTOR, '.jp-NotebookPanel .jp-KernelName')
        return names and 'No Kernel' not in names[0].text
    wait_for('the toolbar to show the kernel', kernel_shown, 60)
    time.sleep(2)  # JupyterLab writes the kernel's spec and language_info into the notebook just after it connects
    dirty = browser.find_elements(By.CSS_SELECTOR, '.lm-TabBar-tab.jp-mod-dirty')
    committed = json.loads((lab.root / LESSON).read_text())['metadata']
    if committed.get('language_info', {}).get('version') == platform.python_version():
        assert not dirty, f'{LESSON} shows as modified right after opening: JupyterLab changed its metadata'
    else:  # on another Python only language_info.version may differ: save and compare
        click_menu(browser, 'File', 'Save Notebook')
        wait_for('the save', lambda: not browser.find_elements(By.CSS_SELECTOR, '.lm-TabBar-tab.jp-mod-dirty'), 30)
        saved = json.loads((lab.root / LESSON).read_text())['metadata']
        saved.get('language_info', {}).pop('version', None), committed.get('language_info', {}).pop('version', None)
        assert saved == committed, f'JupyterLab changed {LESSON}\'s metadata on opening: {committed} -> {saved}'
        print(f'note: the notebooks record Python {committed["language_info"]["version"]!r}, this is '
              f'{platform.python_version()}: JupyterLab marks them modified for the version alone')

    click_menu(browser, 'Run', 'Run All Cells')
    def finished():  # Run All stops at a cell that raises, leaving the cells after it unrun
        cells = browser.execute_script(JS_CELLS)
        ran = [re.fullmatch(r'\[\d+\]:', c['prompt']) for c in cells]
        return (lab.kernel_state(LESSON) == 'idle' and not any(c['prompt'] == '[*]:' for c in cells)
                and (all(ran) or any(c['errors'] for c in cells)) and cells)
    cells = wait_for(f'Run All Cells to finish {LESSON}', finished, 300)
    errors = [(i, e) for i, c in enumerate(cells) for e in c['errors'] if re.search('Traceback|Error|Warning', e)]
    assert not errors, f'{LESSON}: code cell {errors[0][0] + 1} shows an error or warning:\n{errors[0][1][-2000:]}'
    unrun = [i + 1 for i, c in enumerate(cells) if not re.fullmatch(r'\[\d+\]:', c['prompt'])]
    assert not unrun, f'{LESSON}: code cells {unrun} have no execution count after Run All Cells'
    assert len(cells) == n_code
    print(f'JupyterLab Run All of {LESSON}: {len(cells)} code cells, {time.monotonic() - start:.1f} s from opening')


SUBSET = ['01_competition', '02_eda', 'index']  # quick lessons; 02_eda draws figures


@pytest.fixture(scope='module')
def subset_site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    subprocess.run([sys.executable, str(ROOT / 'tools' / 'build_docs.py'), '--only', *SUBSET, '--jobs', '2',
                    '--out', str(out)], check=True, cwd=ROOT)
    return out


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(folder):
    "Serve `folder` over HTTP on a free localhost port, as a web host would; returns (url, server)."
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f'http://127.0.0.1:{server.server_address[1]}', server


JS_PAGE = """return {
  title: document.title,
  figures: +document.querySelector('meta[name=figures]').content,
  images: [...document.querySelectorAll('img')].map(i => ({src: i.src.slice(0, 60),
                                                          ok: i.complete && i.naturalWidth > 0})),
  svgs: document.querySelectorAll('main .output_area svg').length,
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  prev: document.querySelector('a[rel=prev]')?.getAttribute('href'),
  next: document.querySelector('a[rel=next]')?.getAttribute('href'),
};"""


def check_site(browser, folder):
    "Open every page of the site in `folder`; return {page: what the browser saw} after checking it."
    url, server = serve(folder)
    try:
        pages = sorted(p.name for p in folder.glob('*.html'))
        assert 'index.html' in pages, f'{folder} has no index.html'
        seen = {}
        for page in pages:
            browser.get(f'{url}/{page}')
            wait_for(f'{page} to load', lambda: browser.execute_script('return document.readyState') == 'complete', 30)
            seen[page] = info = browser.execute_script(JS_PAGE)
            assert info['title'], f'{page} has no title'
            broken = [i['src'] for i in info['images'] if not i['ok']]
            assert not broken, f'{page}: {len(broken)} image(s) do not show: {broken[:3]}'
            shown = sum(i['ok'] for i in info['images']) + info['svgs']
            made = info['figures']
            assert shown >= made, f'{page}: its notebook made {made} figure(s), the page shows {shown}'
        for page, info in seen.items():  # every internal link leads to a page of the site (and to an anchor on it)
            for link in info['links']:
                if not link.startswith(url): continue
                target, _, anchor = link[len(url) + 1:].partition('#')
                assert target in seen, f'{page} links to {target}, which the site does not have'
                assert not anchor or urllib.parse.unquote(anchor) in seen[target]['ids'], \
                    f'{page} links to a missing anchor: {link}'
        return seen
    finally:
        server.shutdown()


def test_site_pages(browser, subset_site):
    seen = check_site(browser, subset_site)
    lessons = [s + '.html' for s in SUBSET if s[0].isdigit()]
    assert sorted(seen) == sorted(s + '.html' for s in SUBSET)
    assert seen['02_eda.html']['figures'] > 0, '02_eda draws figures, but its page records none'
    index_links = {l.rsplit('/', 1)[-1] for l in seen['index.html']['links']}
    assert set(lessons) <= index_links, f'the index does not link to {sorted(set(lessons) - index_links)}'
    chain = [(seen[p]['prev'], seen[p]['next']) for p in lessons]
    assert chain == [(None, lessons[1]), (lessons[0], None)], f'previous/next links out of order: {chain}'


@pytest.mark.skipif(not (ROOT / '_docs' / 'index.html').exists(),
                    reason='the full site: runs once `make docs` has built _docs/ (make docs && pytest tests/test_browser.py)')
def test_full_site_pages(browser):
    seen = check_site(browser, ROOT / '_docs')
    lessons = sorted(p.stem for p in (ROOT / 'nbs').glob('[0-9]*.ipynb'))
    missing = [s for s in lessons if s + '.html' not in seen]
    assert not missing, f'_docs/ has no page for {missing}: run `make docs` again'


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
    from maskcls.compare import write_compare_report
    from maskcls.config import Config
    from maskcls.cv import run_cv
    from maskcls.eda_report import write_eda
    from maskcls.experiments import runs_table, write_runs_page
    from maskcls.hpo_workers import tune
    from maskcls.layout import read_train
    from maskcls.files import new_run_dir
    from maskcls.suspects import write_suspects
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
