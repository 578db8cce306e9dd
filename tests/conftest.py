"""What the test modules share: the installed `maskcls` command, digests of files and folders, and one small
synthetic dataset (with its image cache) made once per session.

Import the helpers by name (`from conftest import run, tree_digest`); pytest puts this folder on the path.
Tests marked `slow` (whole training runs, CV, browsers, servers) are left out of the quick inner loop:
`pytest -m "not slow" tests` takes a few minutes, `make test` runs everything.
"""
import atexit, hashlib, os, shutil, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
# the default image cache of every test and every command it starts: a folder of the session, never ~/.cache
os.environ['MASKCLS_CACHE'] = tempfile.mkdtemp(prefix='maskcls-test-cache-')
atexit.register(shutil.rmtree, os.environ['MASKCLS_CACHE'], ignore_errors=True)
EXE = shutil.which('maskcls') or str(Path(sys.executable).with_name('maskcls'))
# one thread per process (the 2-core machine runs several at once); the checkout under test first on the path
ENV = {**os.environ, 'OMP_NUM_THREADS': '1',
       'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p)}

SHAPES = ['circle', 'cross', 'square', 'triangle']            # sorted, as ImageFolder numbers them
COLORS = dict(circle=(230, 40, 40), cross=(240, 220, 30), square=(40, 200, 60), triangle=(50, 80, 240))


def run(*args, cwd, ok=True, env=None, timeout=600) -> subprocess.CompletedProcess:
    "Run the installed `maskcls ARGS...` in `cwd`; unless `ok=False`, fail with its output when it exits non-zero."
    r = subprocess.run([EXE, *map(str, args)], cwd=cwd, env=env or ENV, capture_output=True, text=True,
                       timeout=timeout)
    if ok: assert r.returncode == 0, f'maskcls {" ".join(map(str, args))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}'
    return r


def tiny_config(d: Path, **kw):
    "A Config for seconds-long CPU runs on `d/data` (32 x 24 pixels, 1 epoch, no TensorBoard, cache in `d/cache`)."
    from maskcls.config import Config
    base = dict(data=str(d / 'data'), img_size=(32, 24), epochs=1, batch_size=16, cache_dir=str(d / 'cache'),
                tensorboard=False, top_k=1, device='cpu')
    return Config(**{**base, **kw})


def python(code: str, *args, cwd=None, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    """`python -c code ARGS...` in a fresh interpreter, with the tests' environment plus `env`; its output captured as
    text unless `stdout`/`stderr` are given (a log file, say). The exit code is the caller's to check."""
    if 'stdout' not in kw and 'stderr' not in kw: kw['capture_output'] = True
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], cwd=cwd, env={**ENV, **(env or {})}, text=True,
                          timeout=timeout, **kw)


def file_digest(path) -> str:
    "sha256 of a file's bytes."
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(root, mtimes: bool = False) -> dict:
    "Every file under `root` by relative path: its sha256, and with `mtimes` its modification time too."
    root = Path(root)
    return {p.relative_to(root).as_posix(): (file_digest(p), p.stat().st_mtime_ns) if mtimes else file_digest(p)
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='session')
def synth12(tmp_path_factory) -> Path:
    """A folder with `data/` (12 synthetic people, 3 eval people with answers, seed 2, as `maskcls synth` writes it)
    and `cache/` (the image cache the tests share). Read-only for tests: write your runs elsewhere."""
    d = tmp_path_factory.mktemp('synth12')
    r = run('synth', '--out', d / 'data', '--people', 12, '--eval-people', 3, '--seed', 2, cwd=d)
    assert 'wrote 84 train and 21 eval images' in r.stdout, r.stdout
    (d / 'cache').mkdir()
    return d


def link_synth12(d: Path, synth12: Path) -> Path:
    "Make `d/data` and `d/cache` the session's dataset and cache (symbolic links), so paths in a test read as its own."
    for sub in ('data', 'cache'): (d / sub).symlink_to(synth12 / sub)
    return d


def shape(name: str, rng) -> Image.Image:
    "A 40x40 picture of one coloured shape of class `name` at a random place and size on a noisy dark background."
    bg = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
    im = Image.fromarray(bg); d = ImageDraw.Draw(im)
    r, (cx, cy) = int(rng.integers(8, 14)), rng.integers(14, 26, 2)
    col = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLORS[name])
    box = (cx - r, cy - r, cx + r, cy + r)
    if name == 'circle': d.ellipse(box, fill=col)
    elif name == 'square': d.rectangle(box, fill=col)
    elif name == 'triangle': d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    else:
        d.rectangle((cx - r, cy - 3, cx + r, cy + 3), fill=col); d.rectangle((cx - 3, cy - r, cx + 3, cy + r), fill=col)
    return im


def write_shapes(root: Path, per_class: int, seed: int) -> Path:
    "An ImageFolder tree: `root/<class>/<class>_NNN.png`, `per_class` pictures of each of the 4 SHAPES."
    rng = np.random.default_rng(seed)
    for c in SHAPES:
        (root / c).mkdir(parents=True)
        for i in range(per_class): shape(c, rng).save(root / c / f'{c}_{i:03d}.png')
    return root
