"""Run folders survive faults: a full disk (under the run or the image cache), a read-only run folder, a run folder
removed while training, damaged checkpoints, crafted checkpoints, and a parent killed with SIGKILL.

A full disk is a real one: a tmpfs of a few MB mounted for the test (root, as in CI). Where mounting is refused,
the test says so and fills the disk in another way: a `sitecustomize` on the child's path makes `torch.save` and
`DataFrame.to_csv` raise `OSError(ENOSPC)` as a full disk would (a weaker check: TensorBoard is not covered then).
"""
import errno, json, os, shutil, signal, subprocess, sys, textwrap, time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskcls.runs import load_checkpoint
from conftest import ENV, EXE, run

pytestmark = pytest.mark.slow    # trains runs, fills disks, kills processes

TRAIN = ['--model', 'tiny', '--img-size', '32', '24', '--epochs', '2', '--device', 'cpu']


def maskcls(*args, env=None, cwd=None) -> subprocess.CompletedProcess:
    "The command, whatever its exit code (the tests here expect failures); `env` defaults to the shared one."
    return run(*args, cwd=cwd, env=env, ok=False)

def last_line(r) -> str:
    "The last line the command wrote to stderr (progress bars end with carriage returns, not lines)."
    return r.stderr.strip().splitlines()[-1].split('\r')[-1] if r.stderr.strip() else ''

def no_traceback(r):
    assert 'Traceback' not in r.stderr, r.stderr[-3000:]

def leftovers(folder) -> list:
    "Temporary files left behind by a write that failed (atomic_write names them NAME.tmp-PID-XXXXXX.EXT)."
    return sorted(str(p) for p in Path(folder).rglob('*.tmp*'))


@contextmanager
def small_disk(path: Path, size: str):
    "A folder on a tmpfs of `size`; yields (folder, env for child processes, whether it is a real mount)."
    path.mkdir(parents=True, exist_ok=True)
    env = dict(ENV)
    cmd = ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)]
    mounted = subprocess.run(cmd, capture_output=True).returncode == 0
    if not mounted:                        # said in the docstring: the writers are made to fail as a full disk would
        print(f'could not mount a tmpfs at {path}: simulating a full disk with a sitecustomize', file=sys.stderr)
        hook = path.parent / f'{path.name}-hook'; hook.mkdir(exist_ok=True)
        (hook / 'sitecustomize.py').write_text(textwrap.dedent('''
            import os
            def _full(self, *a, **k): raise OSError(28, 'No space left on device')
            if os.environ.get('FAULT_DIR'):
                import torch, pandas
                _save, _csv = torch.save, pandas.DataFrame.to_csv
                calls = [0]
                def save(obj, f, *a, **k):
                    calls[0] += 1
                    if calls[0] > int(os.environ.get('FAULT_SAVES', '0')): raise OSError(28, 'No space left on device')
                    return _save(obj, f, *a, **k)
                torch.save = save
                if os.environ.get('FAULT_CSV'): pandas.DataFrame.to_csv = _full'''))
        env['PYTHONPATH'] = f"{hook}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env['FAULT_DIR'] = str(path)
    try: yield path, env, mounted
    finally:
        if mounted: subprocess.run(['umount', '-l', str(path)], check=True)

@contextmanager
def real_mount(*cmds):
    "Run the mount commands (root only; the test is skipped where mounting is refused); unmount the last one at the end."
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode: pytest.skip(f'cannot mount ({" ".join(cmd)}: {r.stderr.strip()}); run the tests as root')
    try: yield
    finally: subprocess.run(['umount', '-l', cmds[-1][-1]], check=True)

def grow(path: Path, size: str, env: dict, mounted: bool) -> dict:
    "Free space on the small disk: a bigger tmpfs, or no more simulated failures."
    if mounted: subprocess.run(['mount', '-o', f'remount,size={size}', str(path)], check=True); return env
    return {k: v for k, v in env.items() if k != 'FAULT_DIR'}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    "Tiny synthetic data and a 2-epoch run on it (best.pt, last.pt of epoch 2, last.prev.pt of epoch 1)."
    root = tmp_path_factory.mktemp('faults')
    r = maskcls('synth', '--out', root / 'data', '--people', 6, '--eval-people', 2, '--workers', 1)
    assert r.returncode == 0, r.stderr[-3000:]
    r = maskcls('train', '--data', root / 'data', '--out', root / 'run', '--cache-dir', root / 'cache', *TRAIN)
    assert r.returncode == 0, r.stderr[-3000:]
    return root

def predict(trained, run, out) -> subprocess.CompletedProcess:
    return maskcls('predict', '--run', run, '--data', trained / 'data' / 'eval', '--out', out, '--device', 'cpu')

def copy_run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained / 'run', tmp_path / 'run'))


def test_disk_full_during_training_stops_in_one_line_and_resumes(trained, tmp_path):
    "A disk that fills up in epoch 2: one line naming the file and what to do, no partial file, epoch 1 resumable."
    with small_disk(tmp_path / 'disk', '3m') as (disk, env, mounted):
        env['FAULT_SAVES'] = '2'                    # simulated: best.pt and last.pt of epoch 1 fit, no more
        run = disk / 'run'
        r = maskcls('train', '--data', trained / 'data', '--out', run, '--cache-dir', trained / 'cache', *TRAIN,
                    env=env)
        no_traceback(r)
        assert r.returncode == 1, r.stderr[-3000:]
        line = last_line(r)
        assert line.startswith(f'maskcls train: no space left on device while writing {run}'), line
        assert 'free space on that disk, or choose another --out' in line, line
        assert line.endswith(f'then continue with: maskcls train --resume {run}'), line
        assert leftovers(run) == []
        state = load_checkpoint(run / 'last.pt')            # whole, and the state after epoch 1
        assert state['epoch'] == 1 and len(state['history']) == 1
        load_checkpoint(run / 'best.pt')
        env = grow(disk, '64m', env, mounted)
        r = maskcls('train', '--resume', run, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        assert load_checkpoint(run / 'last.pt')['epoch'] == 2


def test_disk_full_while_writing_predictions(trained, tmp_path):
    "predict on a full disk: one line naming the prediction file; neither it nor a temporary file is left."
    with small_disk(tmp_path / 'disk', '1m') as (disk, env, mounted):
        env['FAULT_CSV'] = '1'
        if mounted:                                          # fill it up
            with open(disk / 'filler', 'wb') as f:
                try:
                    while True: f.write(b'\0' * 65536); f.flush()
                except OSError as e: assert e.errno == errno.ENOSPC
        out = disk / 'preds.csv'
        r = maskcls('predict', '--run', trained / 'run', '--data', trained / 'data' / 'eval', '--out', out,
                    '--device', 'cpu', env=env)
        no_traceback(r)
        assert r.returncode == 1, r.stderr[-3000:]
        line = last_line(r)
        assert line.startswith(f'maskcls predict: no space left on device while writing {out}: free space'), line
        assert sorted(p.name for p in disk.iterdir() if p.name != 'filler') == []


def test_disk_full_under_the_image_cache_names_cache_dir(trained, tmp_path):
    "A full disk under --cache-dir names the cache and --cache-dir (not --out); no half-written manifest is left."
    cache = tmp_path / 'small'; cache.mkdir()
    with real_mount(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(cache)]):    # 42 images need 97 kB
        run = tmp_path / 'run'
        r = maskcls('train', '--data', trained / 'data', '--out', run, '--cache-dir', cache, *TRAIN)
        no_traceback(r)
        assert r.returncode == 1, r.stderr[-3000:]
        line = last_line(r)
        assert line.startswith(f'maskcls train: no space left on device while writing {cache}/'), line
        assert f'(the image cache {cache}): free space on that disk, or choose another --cache-dir' in line, line
        assert '--out' not in line, line
        assert leftovers(cache) == [], leftovers(cache)
        for m in cache.glob('manifest*'): json.loads(m.read_text())       # a manifest is whole, or absent
        assert not (run / 'best.pt').exists()


def test_resume_on_a_read_only_run_folder_says_so(trained, tmp_path):
    "train --resume on a read-only run folder: one line naming the folder and the fix, no traceback, nothing changed."
    src, ro = copy_run(trained, tmp_path), tmp_path / 'ro'
    ro.mkdir()
    before = {p.name: p.stat().st_mtime_ns for p in src.iterdir()}
    with real_mount(['mount', '--bind', str(src), str(ro)], ['mount', '-o', 'remount,bind,ro', str(ro)]):
        r = maskcls('train', '--resume', ro)
        no_traceback(r)
        assert r.returncode == 1, r.stderr[-3000:]
        line = last_line(r)
        assert line.startswith(f'maskcls train: the run folder {ro} is read-only (could not write '), line
        assert line.endswith('copy it to a disk you can write to, or choose another --out'), line
        assert len([x for x in r.stderr.splitlines() if x.startswith('maskcls train:')]) == 1, r.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in src.iterdir()} == before


def test_run_folder_removed_while_training_ends_in_one_line(trained, tmp_path):
    "rm -rf of the run folder during training: the run ends (exit 1) with one line naming the folder, no traceback."
    run = tmp_path / 'run'
    args = ['train', '--data', trained / 'data', '--out', run, '--cache-dir', trained / 'cache', *TRAIN[:-4],
            '--epochs', '200', '--device', 'cpu']
    p = subprocess.Popen([EXE, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while not (run / 'best.pt').exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.1)
        assert p.poll() is None, 'training ended before its folder could be removed: give it more epochs'
        shutil.rmtree(run)
        out, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert 'Traceback' not in err, err[-3000:]
    assert p.returncode == 1, err[-3000:]
    lines = [x.split('\r')[-1] for x in err.strip().splitlines() if 'maskcls train:' in x]
    assert len(lines) == 1 and lines[0].startswith(f'maskcls train: the run folder {run} was removed while it was '
                                                   'being written'), err[-3000:]


def test_truncated_best_pt_is_named(trained, tmp_path):
    "A best.pt cut short (a copy that ran out of space) is named, with what to do, instead of a zip-reader traceback."
    run = copy_run(trained, tmp_path)
    b = (run / 'best.pt').read_bytes(); (run / 'best.pt').write_bytes(b[:len(b) // 3])
    r = predict(trained, run, tmp_path / 'p.csv')
    no_traceback(r)
    assert r.returncode == 2
    line = last_line(r)
    assert line.startswith(f'maskcls predict: {run / "best.pt"} is damaged or cut short ({len(b) // 3:,} bytes'), line
    assert 'Re-create it: train the run again, or copy the file again' in last_line(r)
    assert not (tmp_path / 'p.csv').exists()


def test_truncated_last_pt_resumes_from_the_previous_state(trained, tmp_path):
    "--resume with a damaged last.pt takes last.prev.pt (epoch 1), says so, and trains epoch 2 again."
    run = copy_run(trained, tmp_path)
    (run / 'last.pt').write_bytes((run / 'last.pt').read_bytes()[:1000])
    r = maskcls('train', '--resume', run)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f'{run / "last.pt"} is damaged or cut short (1,000 bytes' in r.stderr, r.stderr[-3000:]
    assert f'resuming from {run / "last.prev.pt"} instead, the state saved after epoch 1' in r.stderr
    s = load_checkpoint(run / 'last.pt')
    assert s['epoch'] == 2 and [h['epoch'] for h in s['history']] == [1, 2]


class Crafted:
    "Unpickling this runs a shell command: what a booby-trapped checkpoint does."
    def __init__(self, mark): self.mark = mark
    def __reduce__(self): return os.system, (f'touch {self.mark}',)

def test_crafted_checkpoint_is_refused(trained, tmp_path):
    "A best.pt whose unpickling would run a command is refused by name, and the command does not run."
    run = copy_run(trained, tmp_path)
    mark = tmp_path / 'ran'
    torch.save(dict(model=Crafted(mark), cfg={}), run / 'best.pt')
    r = predict(trained, run, tmp_path / 'p.csv')
    no_traceback(r)
    assert r.returncode == 2
    line = last_line(r)
    assert line.startswith(f'maskcls predict: {run / "best.pt"} was not loaded: it is not a plain checkpoint'), line
    assert not mark.exists()
    with pytest.raises(ValueError, match='last.pt was not loaded: it is not a plain checkpoint'):
        torch.save(dict(epoch=1, rng=Crafted(mark)), run / 'last.pt'); load_checkpoint(run / 'last.pt')
    assert not mark.exists()


def _children(pid: int) -> list[int]:
    "Pids whose parent is `pid` (read from /proc)."
    kids = []
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: stat = (d / 'stat').read_text()
        except OSError: continue
        if int(stat.rsplit(')', 1)[1].split()[1]) == pid: kids.append(int(d.name))
    return kids

def _alive(pid: int) -> bool:
    "Whether `pid` runs (a zombie holds no memory: it counts as gone)."
    try: return (Path('/proc') / str(pid) / 'stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError: return False

def test_cache_workers_die_with_killed_parent(tmp_path):
    "kill -9 of a process building the cache ends its decode workers too (they held ~500 MB each when orphaned)."
    img = tmp_path / 'img'; img.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 800, 3), np.uint8)).save(img / '0.jpg', quality=95)
    for i in range(1, 4000): os.link(img / '0.jpg', img / f'{i}.jpg')    # distinct paths, one file: quick to make
    code = textwrap.dedent(f'''
        from maskcls.cache import build_cache
        paths = [f"{img}/{{i}}.jpg" for i in range(4000)]
        build_cache(paths, "{tmp_path / 'cache'}", (32, 24), workers=2, progress=False)
        print("finished")''')
    p = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers = []
    try:
        t0 = time.time()
        while len(workers) < 2 and p.poll() is None and time.time() - t0 < 120:
            time.sleep(0.2); workers = [w for w in _children(p.pid) if _alive(w)]
        err = p.stderr.read().decode()[-2000:] if p.poll() is not None else ''
        assert len(workers) == 2, f'expected 2 decode workers, found {workers}; stderr: {err}'
        time.sleep(1.0)
        assert p.poll() is None, 'the build finished before it could be killed: give it more images'
        os.kill(p.pid, signal.SIGKILL); p.wait()
        t1 = time.time()
        while any(_alive(w) for w in workers) and time.time() - t1 < 5: time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
        assert not left, f'decode workers {left} outlived their killed parent by {time.time() - t1:.1f}s'
    finally:
        if p.poll() is None: p.kill()
        for w in workers:
            try: os.kill(w, signal.SIGKILL)
            except ProcessLookupError: pass
