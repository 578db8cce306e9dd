"""The `maskcls` command end to end, through the installed console script (what a user types)."""
import re, shutil
from pathlib import Path

import pandas as pd
import pytest

from maskcls.cli import COMMANDS, main
from maskcls.submission import read_predictions, read_submission
from conftest import EXE, link_synth12, python, run

TINY = ['--img-size', '32', '24', '--batch-size', '16', '--no-tensorboard']


@pytest.fixture(scope='module')
def data(tmp_path_factory, synth12):
    return link_synth12(tmp_path_factory.mktemp('cli'), synth12)


def test_installed_command_exists():
    assert Path(EXE).exists(), 'the console script `maskcls` is not installed: pip install -e .'


def option_entries(help_text: str) -> list:
    "Each option of a `--help` text as one line: its flags and its help, continuation lines joined."
    entries, cur = [], None
    for line in help_text.splitlines():
        if re.match(r'  -', line): entries.append(line.strip()); cur = len(entries) - 1
        elif cur is not None and line.startswith('   ') and line.strip(): entries[cur] += ' ' + line.strip()
        else: cur = None
    return entries


@pytest.mark.parametrize('command', list(COMMANDS))
def test_help_of_every_command_shows_each_default(command, capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '100')
    with pytest.raises(SystemExit) as e: main([command, '--help'])
    assert e.value.code == 0
    opts = [o for o in option_entries(capsys.readouterr().out) if not o.startswith('-h, --help')]
    assert len(opts) >= 2
    missing = [o.split()[0] for o in opts if '(default' not in o and '(required)' not in o]
    assert not missing, f'maskcls {command} --help shows no default for {missing}'
    none = [o for o in opts if '(default: None)' in o]
    assert not none, f'a default of None tells the reader nothing: say what it means ({none})'


def test_hpo_help_shows_its_own_defaults(capsys):
    with pytest.raises(SystemExit): main(['hpo', '--help'])
    opts = {o.split()[0].rstrip(','): o for o in option_entries(capsys.readouterr().out)}
    for opt, default in [('--trials', '20'), ('--objective', 'holdout'), ('--search', 'tpe'), ('--pruner', 'median'),
                         ('--search-seed', '0'), ('--timeout', 'none'), ('--lr', '0.003'),
                         ('--storage', '--out/study.db'), ('--study', 'maskcls'), ('--jobs', '1'), ('--retries', '1')]:
        assert f'(default: {default})' in opts[opt], opts[opt]


def test_synth_layout_and_no_overwrite(data):
    tr = data / 'data' / 'train'
    assert (tr / 'train.csv').exists() and (data / 'data' / 'eval' / 'info.csv').exists()
    assert len(list((tr / 'images').glob('[!.]*_Asian_*'))) == 12
    r = run('synth', '--out', data / 'data', '--people', 10, cwd=data, ok=False)
    assert r.returncode != 0 and 'overwrite' in r.stderr


def test_validate_lists_every_problem(data, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(data / 'data', bad)
    people = sorted((bad / 'train' / 'images').glob('0*'))
    next(people[0].glob('mask2.*')).unlink()
    f = next(people[1].glob('normal.*')); f.write_bytes(f.read_bytes()[:300])
    r = run('validate', '--data', bad, cwd=tmp_path, ok=False)
    assert r.returncode == 1
    assert '2 problem(s)' in r.stderr and 'missing mask2' in r.stderr and 'truncated' in r.stderr


@pytest.mark.slow
def test_train_end_to_end_never_overwrites_and_resumes(data):
    args = ['train', '--data', data / 'data', '--epochs', 1, '--out', data / 'runs' / 'exp', *TINY]
    r1 = run(*args, cwd=data)
    assert 'best macro F1' in r1.stdout
    run1 = data / 'runs' / 'exp'
    assert {'best.pt', 'last.pt', 'config.yaml', 'metrics.csv'} <= {p.name for p in run1.iterdir()}
    run(*args, cwd=data)
    assert (data / 'runs' / 'exp2' / 'best.pt').exists()                       # a second run gets a new folder
    assert len(pd.read_csv(run1 / 'metrics.csv')) == 1
    run('train', '--resume', run1, '--epochs', 2, cwd=data)                     # continue the same run to epoch 2
    m = pd.read_csv(run1 / 'metrics.csv')
    assert m['epoch'].tolist() == [1, 2]


@pytest.mark.parametrize('args,msg', [(['--model', 'resnet19'], "model: unknown model 'resnet19'"),
                                      (['--img-size', '256'], 'expected 2 argument'),
                                      (['--lr', '-0.1'], 'lr: must not be negative'),
                                      (['--loss', 'focall'], "invalid choice: 'focall'")])
def test_train_bad_options(data, args, msg):
    r = run('train', '--data', data / 'data', *args, cwd=data, ok=False)
    assert r.returncode != 0 and msg in r.stderr, r.stderr


def test_train_unknown_key_in_yaml(data, tmp_path):
    (tmp_path / 'exp.yaml').write_text('learning_rate: 0.1\n')
    r = run('train', '--data', data / 'data', '--config', tmp_path / 'exp.yaml', cwd=data, ok=False)
    assert r.returncode == 2 and "'learning_rate' (did you mean 'lr'?)" in r.stderr


@pytest.mark.slow
def test_reduced_demo_predict_ensemble_compare(data):
    r = run('demo', '--data', data / 'data', '--out', data / 'demo', '--folds', 2, '--epochs', 1, '--img-size', 32, 24,
            '--batch-size', 16, '--cache-dir', data / 'cache', cwd=data)
    assert 'fold ensemble + TTA' in r.stdout and 'out-of-fold macro F1' in r.stdout
    tta = pd.read_csv(data / 'demo' / 'tta_oof.csv', index_col=0)                # per-view and merged OOF scores
    assert list(tta.index) == ['view identity', 'view hflip', 'mean of 2'] and tta['f1'].between(0, 1).all()
    info = data / 'data' / 'eval' / 'info.csv'
    sub = read_submission(data / 'demo' / 'submission.csv', info)               # a valid submission, in info.csv order
    assert len(sub) == 21 and sub.between(0, 17).all()
    assert list(pd.read_csv(data / 'demo' / 'submission.csv').columns) == ['ImageID', 'ans']
    # predict from the CV folder (fold ensemble) and from one fold, then ensemble and compare them
    run('predict', '--run', data / 'demo' / 'cv', '--data', data / 'data' / 'eval', '--out',
        data / 'p_cv.csv', cwd=data)
    run('predict', '--run', data / 'demo' / 'cv' / 'fold0', '--data', data / 'data', '--tta', 'none', '--out',
        data / 'p_f0.csv', cwd=data)
    assert len(read_predictions(data / 'p_cv.csv', info)) == 21
    r = run('ensemble', data / 'p_cv.csv', data / 'p_f0.csv', '--method', 'greedy', '--oof',
            data / 'demo' / 'cv' / 'oof.csv',
            data / 'demo' / 'cv' / 'oof.csv', '--info', info, '--out', data / 'ens.csv', cwd=data)
    assert 'weights' in r.stdout and (data / 'ens_submission.csv').exists()
    r = run('ensemble', data / 'p_cv.csv', data / 'p_f0_submission.csv', '--method', 'hard', '--info', info, '--out',
            data / 'hard.csv', cwd=data)
    assert len(read_submission(data / 'hard.csv', info)) == 21
    r = run('compare', data / 'p_cv_submission.csv', data / 'p_f0_submission.csv', '--eval', data / 'data' / 'eval',
            '--out', data / 'cmp', cwd=data)
    assert (data / 'cmp' / 'index.html').exists()


@pytest.mark.slow
def test_hpo_then_train_the_best_config(data):
    r = run('hpo', '--data', data / 'data', '--epochs', 1, *TINY, '--trials', 2, '--search', 'random', '--out',
            data / 'hpo',
            '--cache-dir', data / 'cache', '--device', 'cpu', cwd=data)
    assert 'repeat it: maskcls train --config' in r.stdout
    assert len(pd.read_csv(data / 'hpo' / 'trials.csv')) == 2
    assert (data / 'hpo' / 'search.png').exists() and (data / 'hpo' / 'search_curves.png').exists()
    assert f"the page of the search: {data / 'hpo' / 'index.html'}" in r.stdout
    assert 'Best: trial' in (data / 'hpo' / 'index.html').read_text()
    run('train', '--config', data / 'hpo' / 'best_config.yaml', cwd=data)
    assert (data / 'hpo' / 'best' / 'best.pt').exists()


def test_help_imports_no_heavy_library():
    """`maskcls --help` and `maskcls synth --help` parse without torch, scikit-learn, Optuna, pandas & co;
    `maskcls train --help` without torch and scikit-learn."""
    heavy = ['torch', 'torchvision', 'sklearn', 'optuna', 'cleanlab', 'matplotlib', 'pandas', 'PIL']
    for args in (['--help'], ['synth', '--help'], ['train', '--help']):
        if args[0] == 'train': heavy = heavy[:-2]      # the Config's options: no torch (pandas via the data layout)
        code = ('import sys\nfrom maskcls.cli import main\ntry: main(sys.argv[1:])\nexcept SystemExit: pass\n'
                f'print(sorted(m for m in {heavy!r} if m in sys.modules))')
        r = python(code, *args, timeout=300)
        assert r.stdout.splitlines()[-1] == '[]', f'maskcls {" ".join(args)} imported {r.stdout.splitlines()[-1]}'
