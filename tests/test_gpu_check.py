"""benchmarks/gpu_check.py on the CPU (`--tiny`): every stage runs and writes its results; a run killed midway keeps
the finished stages on disk as valid JSON and leaves no stage process behind; a spent budget skips stages, saying so."""
import json, os, signal, subprocess, sys, time, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / 'benchmarks' / 'gpu_check.py'
STAGES = ['environment', 'data_pipeline', 'throughput', 'cv', 'cuda_cells']


def check(out, *args) -> list:
    # a generous budget: the tiny stages take seconds, but other work may share the cores
    return [sys.executable, str(CHECK), '--out', str(out), '--tiny', '--budget', '1500', *args]


def read(out) -> dict: return json.loads((Path(out) / 'gpu_check.json').read_text())


def alive(pid: int) -> bool:
    "Is process `pid` running? (A zombie, dead but not yet reaped by its new parent, is not.)"
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError): return False


def test_tiny_check_runs_every_stage(tmp_path):
    r = subprocess.run(check(tmp_path, '--work', str(tmp_path / 'elsewhere')), capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    doc = read(tmp_path)
    assert list(doc['stages']) == STAGES and doc['finished']
    assert {s['status'] for s in doc['stages'].values()} == {'done'}, doc['stages']
    res = {k: s['results'] for k, s in doc['stages'].items()}
    assert res['environment']['cpu_cores'] == os.cpu_count() and res['environment']['cuda_available'] is False
    assert res['environment']['packages']['numpy']
    dp = res['data_pipeline']
    assert dp['baseline_images_per_s'] > 0 and dp['maskcls_cpu_images_per_s'] > 0 and dp['cpu_speedup'] > 0
    rows = res['throughput']['rows']
    assert len(rows) == 8                                      # bf16 x channels-last x compile, one model
    assert {(r['bf16'], r['channels_last'], r['compile']) for r in rows if r['images_per_s'] > 0} == \
        {(b, c, k) for b in (True, False) for c in (True, False) for k in (True, False)}
    wait = res['throughput']['data_wait']['preload_False']
    assert wait['loader_images_per_s'] > 0 and 0 <= wait['data_wait_share'] <= 1
    cv = res['cv']
    assert cv['images'] == 7 * cv['people'] and len(cv['seconds']['folds']) == cv['folds'] == 2
    assert cv['seconds']['synth'] > 0 and cv['seconds']['cache'] > 0 and 0 <= cv['oof_macro_f1'] <= 1
    cells = res['cuda_cells']
    assert {'07_augment', '08_loader', '06_training', '08_tta'} <= set(cells['found'])
    toy = cells['notebooks']['toy']                            # its slow, notest and eval: false cells would fail
    assert toy['status'] == 'passed' and [c['cell'] for c in toy['cells']] == [3, 6]
    assert 'the second cuda cell ran' in toy['cells'][1]['output']
    assert (tmp_path / 'elsewhere' / 'comp_data' / 'train').is_dir() and not (tmp_path / 'work').exists()
    md = (tmp_path / 'gpu_check.md').read_text()
    assert all(f'## {s}: done' in md for s in STAGES) and '| tiny | True | True | True |' in md


def test_cut_off_keeps_finished_stages(tmp_path):
    p = subprocess.Popen(check(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        t0, doc = time.time(), {}
        while time.time() - t0 < 600:                          # kill it once a stage is done and the next has begun
            if p.poll() is not None: break
            try: doc = read(tmp_path)
            except (OSError, ValueError): doc = {}               # not there yet (it is replaced atomically)
            st = doc.get('stages', {})
            if st.get('environment', {}).get('status') == 'done' and 'pid' in st.get('data_pipeline', {}): break
            time.sleep(0.2)
        assert p.poll() is None, 'the check ended before it could be cut off'
        os.kill(p.pid, signal.SIGKILL); p.wait()
    finally:
        if p.poll() is None: os.kill(p.pid, signal.SIGKILL); p.wait()
    doc = read(tmp_path)                                      # valid JSON after the kill
    env, dp = doc['stages']['environment'], doc['stages']['data_pipeline']
    assert env['status'] == 'done' and env['results']['cpu_cores'] == os.cpu_count() and doc['finished'] is None
    assert dp['status'] == 'running' and 'cv' not in doc['stages']
    assert '## environment: done' in (tmp_path / 'gpu_check.md').read_text()
    for f in (tmp_path / 'parts').glob('*.json'): json.loads(f.read_text())
    deadline = time.time() + 30                               # the running stage dies with the check
    while time.time() < deadline:
        if not alive(dp['pid']): break
        time.sleep(0.2)
    else:
        os.kill(dp['pid'], signal.SIGKILL)
        raise AssertionError(f"stage process {dp['pid']} outlived the killed check")


def wheel(folder, name, package):
    "A pure-Python wheel of `package` (what `pip download` gets for fastcore)."
    with zipfile.ZipFile(folder / f'{name}-1.0-py3-none-any.whl', 'w') as z:
        z.writestr(f'{package}/__init__.py', 'X = 1\n'); z.writestr(f'{name}-1.0.dist-info/METADATA', f'Name: {name}\n')


def test_spent_budget_skips_stages_and_wheels_unpack(tmp_path):
    whl, out = tmp_path / 'whl', tmp_path / 'out'
    whl.mkdir(); wheel(whl, 'zz_probe', 'zz_gpu_check_probe'); wheel(whl, 'numpy_again', 'numpy')
    r = subprocess.run([sys.executable, str(CHECK), '--out', str(out), '--tiny', '--budget', '1', '--wheels', str(whl)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = read(out)
    assert doc['wheels_unpacked'] == ['zz_probe-1.0-py3-none-any.whl']      # numpy is there already
    assert (out / 'work' / 'site' / 'zz_gpu_check_probe' / '__init__.py').exists()     # --work: OUT/work
    assert not (out / 'work' / 'site' / 'numpy').exists()
    st = doc['stages']
    assert st['environment']['status'] == 'done'               # the environment always runs
    for name in STAGES[1:]:
        assert st[name]['status'] == 'skipped' and 'budget spent' in st[name]['notes'][0]
    assert 'skipped, budget spent' in r.stdout


def test_run_group_kills_the_whole_group(tmp_path):
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    try: from gpu_check import run_group
    finally: sys.path.remove(str(ROOT / 'benchmarks'))
    pid_file = tmp_path / 'grandchild'
    t0 = time.time()
    try: run_group(['bash', '-c', f'sleep 60 & echo $! > {pid_file}; wait'], 2)
    except subprocess.TimeoutExpired: pass
    else: raise AssertionError('no TimeoutExpired')
    assert time.time() - t0 < 30
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    if alive(grandchild):
        os.kill(grandchild, signal.SIGKILL)
        raise AssertionError('the grandchild outlived its group')
