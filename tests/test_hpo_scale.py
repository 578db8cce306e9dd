"""A search shared by processes and machines, for real: worker processes on a journal file, two commands on a
PostgreSQL server this module starts (and stops by its process id), pruning across processes, and workers killed
with SIGKILL whose trials are marked failed and run again."""
import glob, json, os, shutil, signal, socket, subprocess, sys, tempfile, textwrap, time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from dataclasses import replace
from optuna.trial import TrialState

from maskcls.config import Config
from maskcls.hpo import make_pruner
from maskcls.hpo_workers import STUDY_NAME, counted_trials, make_storage, open_study, tune
from maskcls.layout import read_train
from maskcls.synth import make_dataset
from conftest import ENV, python

pytestmark = pytest.mark.slow    # searches in several processes and a PostgreSQL server

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[1]
MAIN = 'import sys; from maskcls.cli import main; sys.exit(main(sys.argv[1:]))'
SPACE = 'lr: [log, 1.0e-3, 3.0e-2]\nlabel_smoothing: [float, 0.0, 0.2]\n'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "10 synthetic people and a search space; trials train the tiny CNN at 32 x 24 on the CPU."
    d = tmp_path_factory.mktemp('scale')
    make_dataset(d / 'data', people=10, eval_people=0, seed=0, progress=False)
    (d / 'space.yaml').write_text(SPACE)
    return d


def hpo(d: Path, out: Path, storage, trials: int, *more) -> subprocess.Popen:
    "Start `maskcls hpo` (the command a user types, as a process of its own) on the tiny search."
    args = ['hpo', '--data', d / 'data', '--cache-dir', d / 'cache', '--space', d / 'space.yaml', '--out', out,
            '--storage', storage, '--trials', trials, '--search', 'random', '--model', 'tiny', '--img-size', 32, 24,
            '--batch-size', 32, '--no-tensorboard', '--device', 'cpu', *more]
    return subprocess.Popen([sys.executable, '-c', MAIN, *map(str, args)], cwd=d, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(p: subprocess.Popen, ok=True) -> tuple:
    out, err = p.communicate(timeout=300)
    if ok: assert p.returncode == 0, f'exit {p.returncode}\n{out}\n{err}'
    return out, err


def load(storage) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=make_storage(storage))


def check_complete(study: optuna.Study, total: int) -> list:
    "The study holds exactly `total` counted trials, all finished, with unique numbers: nothing lost, nothing extra."
    trials = study.get_trials()
    counted = counted_trials(trials)
    assert len(counted) == total, [(t.number, t.state, t.user_attrs) for t in trials]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in counted)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.number for t in trials}) == len(trials)
    return counted


def wait_running(storage, proc, name=STUDY_NAME, pid=None, timeout=240) -> optuna.trial.FrozenTrial:
    "The first running trial of study `name` (of process `pid`, if given) that has reported a step, while `proc` runs."
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None: raise AssertionError(f'ended with exit {proc.returncode}: {proc.communicate()}')
        try: trials = optuna.load_study(study_name=name, storage=make_storage(storage)).get_trials(
            states=(TrialState.RUNNING,))
        except KeyError: trials = []                                   # the study is not created yet
        for t in trials:
            if (pid is None or t.user_attrs.get('pid') == pid) and t.intermediate_values: return t
        time.sleep(0.2)
    raise AssertionError(f'no trial started running within {timeout}s')


def test_two_workers_on_a_journal_share_the_trials(data, tmp_path):
    out, log = tmp_path / 'hpo', tmp_path / 'hpo' / 'search.log'
    t0 = time.time()
    stdout, _ = finish(hpo(data, out, log, 4, '--jobs', 2, '--epochs', 1))
    print(f'2 workers, 4 trials: {time.time() - t0:.1f}s')
    counted = check_complete(load(log), 4)
    assert {t.user_attrs['pid'] for t in counted}.isdisjoint({os.getpid()})     # trained in the worker processes
    assert {t.user_attrs['worker'] for t in counted} <= {0, 1}
    for t in counted:                                                           # each trial in its own folder
        cfg = (out / f'trial{t.number}' / 'config.yaml').read_text()
        assert f"lr: {t.params['lr']}" in cfg
    table = pd.read_csv(out / 'trials.csv')
    assert sorted(table['number']) == sorted(t.number for t in load(log).trials)
    assert (out / 'index.html').exists() and 'best_config.yaml' in stdout
    # a second search joins the same study and folder (here in this process): the total goes from 4 to 5
    base = Config(data=str(data / 'data'), img_size=(32, 24), model='tiny', epochs=1, batch_size=32,
                  tensorboard=False, device='cpu', out=str(out / 'best'), cache_dir=str(data / 'cache'))
    df, space = read_train(data / 'data'), yaml.safe_load(SPACE)
    tune(base, df, space, 5, out, sampler='random', storage=log)
    check_complete(load(log), 5)
    assert len(pd.read_csv(out / 'trials.csv')) == 5
    # the same study with other settings is refused, naming the difference
    with pytest.raises(ValueError, match='epochs: 1 -> 2'): tune(replace(base, epochs=2), df, space, 6, out, storage=log)
    with pytest.raises(FileExistsError, match='holds the search of study'):
        tune(base, df, space, 6, out, storage=log, study_name='other')
    assert len(load(log).trials) == 5


def test_a_killed_worker_trial_is_failed_and_run_again(data, tmp_path):
    "SIGKILL one of two workers mid-trial: its trial is marked failed at once, queued again, and the total still holds."
    out, log = tmp_path / 'hpo', tmp_path / 'hpo' / 'search.log'
    p = hpo(data, out, log, 3, '--jobs', 2, '--epochs', 40, '--pruner', 'none')
    try:
        killed = wait_running(log, p).user_attrs['pid']
        assert killed != p.pid                                                # a worker, not the command
        os.kill(killed, signal.SIGKILL)
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL); raise                          # the command and its workers
    _, err = finish(p)
    assert f'pid {killed}) ended with signal SIGKILL' in err
    study = load(log)
    check_complete(study, 3)
    # the trial it was running when killed (a copy run again records the pid of the worker that ran it)
    victim, = [t for t in study.trials if t.user_attrs['pid'] == killed and t.state == TrialState.FAIL]
    again = [t for t in study.trials if t.system_attrs.get('failed_trial') == victim.number]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE and again[0].params == victim.params
    table = pd.read_csv(out / 'trials.csv')
    assert table.loc[table['number'] == again[0].number, 'retry_of'].item() == victim.number


def test_pruning_reads_the_trials_of_other_processes(tmp_path):
    "Three good trials run in another process; a bad trial here is pruned at its first step by comparing with them."
    log = tmp_path / 'prune.log'
    other = textwrap.dedent(f"""
        import os
        from maskcls.hpo import make_pruner
        from maskcls.hpo_workers import open_study
        s = open_study({str(tmp_path)!r}, storage={str(log)!r}, pruner=make_pruner(True))
        def good(t):
            t.set_user_attr('pid', os.getpid())
            for e in range(1, 4): t.report(0.5 + 0.1 * e, e)
            return 0.8
        s.optimize(good, n_trials=3)
        """)
    r = python(other, timeout=120)
    assert r.returncode == 0, r.stderr
    study = open_study(tmp_path, storage=log, resume=True, pruner=make_pruner(True))
    def bad(t):
        for e in range(1, 4):
            t.report(0.1, e)
            if t.should_prune(): raise optuna.TrialPruned()
        return 0.1
    study.optimize(bad, n_trials=1)
    mine = study.trials[-1]
    assert mine.state == TrialState.PRUNED and list(mine.intermediate_values) == [1]
    assert {t.user_attrs['pid'] for t in study.trials[:3]} != {os.getpid()}


# -- a real PostgreSQL server, started for this module and stopped by its process id

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def postgres():
    initdb = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'), key=lambda p: float(Path(p).parts[4]))   # newest last
    if not initdb:
        pytest.fail("PostgreSQL's server programs are missing: run `make postgres` (apt-get install postgresql)")
    bindir, root = Path(initdb[-1]).parent, os.geteuid() == 0
    as_pg = ['runuser', '-u', 'postgres', '--'] if root else []      # postgres refuses to run as root
    d = Path(tempfile.mkdtemp(prefix='maskcls-pg-'))
    if root: shutil.chown(d, 'postgres', 'postgres')
    port = _free_port()
    subprocess.run([*as_pg, bindir / 'initdb', '-D', d / 'data', '-U', 'postgres', '--auth=trust', '--no-sync',
                    '-E', 'UTF8'], check=True, capture_output=True, timeout=120)
    server = subprocess.Popen([*as_pg, bindir / 'postgres', '-D', d / 'data', '-p', str(port), '-k', d,
                               '-h', '127.0.0.1', '-c', 'fsync=off'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(150):
            if subprocess.run([bindir / 'pg_isready', '-h', '127.0.0.1', '-p', str(port)],
                              capture_output=True).returncode == 0: break
            assert server.poll() is None, server.stderr.read().decode()
            time.sleep(0.2)
        subprocess.run([bindir / 'createdb', '-h', '127.0.0.1', '-p', str(port), '-U', 'postgres', 'hpo'],
                       check=True, capture_output=True, timeout=60)
        yield f'postgresql://postgres@127.0.0.1:{port}/hpo'
    finally:
        pid = int((d / 'data' / 'postmaster.pid').read_text().split()[0])   # the server, not runuser
        os.kill(pid, signal.SIGINT)                                         # fast shutdown
        server.wait(timeout=60)
        shutil.rmtree(d, ignore_errors=True)


def test_two_commands_share_a_postgres_study(data, postgres, tmp_path):
    "Two commands with their own folders, as on two machines: 6 trials in all, each trained once, in one place."
    url = postgres
    t0 = time.time()
    ps = [hpo(data, tmp_path / f'machine{k}', url, 6, '--epochs', 2, '--study', 'two') for k in range(2)]
    for p in ps: finish(p)
    print(f'2 commands on PostgreSQL, 6 trials: {time.time() - t0:.1f}s')
    study = optuna.load_study(study_name='two', storage=make_storage(url))
    counted = check_complete(study, 6)
    folders = [{int(f.name[5:]) for f in (tmp_path / f'machine{k}').glob('trial[0-9]*')} for k in range(2)]
    assert folders[0].isdisjoint(folders[1]) and folders[0] | folders[1] == {t.number for t in counted}
    for k in range(2):                                       # each command ends when the study does: the whole table
        assert len(pd.read_csv(tmp_path / f'machine{k}' / 'trials.csv')) == len(study.trials)
        assert json.loads((tmp_path / f'machine{k}' / 'study.json').read_text())['storage'] == url


def test_a_killed_command_trial_is_failed_and_run_again_by_the_next(data, postgres, tmp_path):
    "SIGKILL a whole command mid-trial (nobody is left to notice); the next command fails that trial and reruns it."
    out = tmp_path / 'hpo'
    p = hpo(data, out, postgres, 2, '--epochs', 40, '--pruner', 'none', '--study', 'killed')
    try: wait_running(postgres, p, 'killed', p.pid)
    finally: p.kill(); p.communicate()
    study = optuna.load_study(study_name='killed', storage=make_storage(postgres))
    victim, = study.get_trials(states=(TrialState.RUNNING,))                 # left behind by the killed command
    _, err = finish(hpo(data, out, postgres, 2, '--epochs', 40, '--pruner', 'none', '--study', 'killed'))
    assert f'trials [{victim.number}] were left running by a process that is gone' in err
    check_complete(study, 2)
    assert study.trials[victim.number].state == TrialState.FAIL
    again = [t for t in study.trials if t.system_attrs.get('failed_trial') == victim.number]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE and again[0].params == victim.params


def test_heartbeat_fails_a_silent_trial_of_another_machine(postgres, tmp_path):
    """A process that stops sending heartbeats (here: killed, its trial claiming another host, so no process-id
    check applies) is failed after the grace period by the next worker, and its trial queued again."""
    script = textwrap.dedent(f"""
        import time, optuna
        from maskcls.hpo_workers import make_storage
        s = optuna.create_study(study_name='beat', storage=make_storage({postgres!r}, heartbeat=1, grace=2),
                                direction='maximize', load_if_exists=True)
        def slow(t):
            t.suggest_float('x', 0, 1); t.set_user_attr('host', 'elsewhere'); t.report(0.0, 1)
            time.sleep(600)
        s.optimize(slow, n_trials=1)
        """)
    p = subprocess.Popen([sys.executable, '-c', script], env=ENV)
    try: victim = wait_running(postgres, p, 'beat')
    finally: p.kill(); p.wait()
    study = optuna.load_study(study_name='beat', storage=make_storage(postgres, heartbeat=1, grace=2))
    time.sleep(3)                                                             # past the grace period
    study.optimize(lambda t: t.suggest_float('x', 0, 1), n_trials=1)          # first fails the silent trial
    assert study.trials[victim.number].state == TrialState.FAIL
    again = [t for t in study.trials if t.system_attrs.get('failed_trial') == victim.number]
    assert len(again) == 1 and again[0].state == TrialState.COMPLETE and again[0].params == victim.params


def test_workers_share_the_default_sqlite_study_and_resume_adds(data, tmp_path):
    "Without --storage the workers share out/study.db (SQLite); --resume then adds trials to it, as before."
    base = Config(data=str(data / 'data'), img_size=(32, 24), model='tiny', epochs=1, batch_size=32,
                  tensorboard=False, device='cpu', cache_dir=str(data / 'cache'))
    df, space = read_train(data / 'data'), yaml.safe_load(SPACE)
    s = tune(base, df, space, 3, tmp_path / 'h', sampler='random', jobs=2)
    assert s.user_attrs['out'] == str(tmp_path / 'h') and (tmp_path / 'h' / 'study.db').exists()
    check_complete(s, 3)
    s = tune(base, df, space, 1, tmp_path / 'h', sampler='random', resume=True)
    check_complete(s, 4)
    t = pd.read_csv(tmp_path / 'h' / 'trials.csv')
    # two workers racing for the last trial: one may stop as surplus (a FAIL row marked `surplus`, column absent if none)
    extra = t['surplus'].fillna(False).astype(bool) if 'surplus' in t else pd.Series(False, index=t.index)
    assert (~extra).sum() == 4 and (t.loc[extra, 'state'] == 'FAIL').all(), t
