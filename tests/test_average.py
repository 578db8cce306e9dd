"""`maskcls average` end to end: SWA and top-k from the command line, the run left as it was, CV folders, bad input."""
import contextlib, io, json, shutil

import pandas as pd
import pytest
import torch

from maskcls.cli import main
from maskcls.runs import load_checkpoint
from maskcls.submission import read_predictions
from conftest import link_synth12, run, tree_digest

TINY = ['--img-size', '32', '24', '--batch-size', '16', '--no-tensorboard', '--device', 'cpu']
pytestmark = pytest.mark.slow    # every test here trains


@pytest.fixture(scope='module')
def trained(tmp_path_factory, synth12):
    "A 3-epoch run on 12 synthetic people that kept its 2 best checkpoints and its last 3 epochs."
    d = tmp_path_factory.mktemp('average')
    link_synth12(d, synth12)
    r = run('train', '--data', d / 'data', '--epochs', 3, '--keep-last', 3, '--top-k', 2, '--out', d / 'run',
            '--cache-dir', d / 'cache', *TINY, cwd=d)
    assert 'best macro F1' in r.stdout
    return d


def test_training_keeps_the_last_epochs(trained):
    run = trained / 'run'
    assert sorted(p.name for p in (run / 'epochs').iterdir()) == ['epoch001.pt', 'epoch002.pt', 'epoch003.pt']
    assert len(list((run / 'top').glob('*.pt'))) == 2
    last = load_checkpoint(run / 'epochs' / 'epoch003.pt')
    state = load_checkpoint(run / 'last.pt')
    assert last['epoch'] == 3 and all(torch.equal(v, state['model'][k]) for k, v in last['model'].items())


def test_swa_and_top_k_from_the_command_line(trained):
    d, before = trained, tree_digest(trained / 'run')
    r = run('average', d / 'run', '--swa', 3, cwd=d)
    out = d / 'run_swa3'
    assert 'averaging the last 3 epochs (SWA)' in r.stdout and 'BN recomputed' in r.stdout, r.stdout
    assert {'best.pt', 'config.yaml', 'task.json', 'average.json', 'valid_preds.csv'} <= {p.name for p in out.iterdir()}
    info = json.loads((out / 'average.json').read_text())
    assert info['method'] == 'swa3' and [m['epoch'] for m in info['members']] == [1, 2, 3]
    assert 0 <= info['valid_f1'] <= 1 and info['valid_f1'] == info['valid_f1_bn_recomputed']
    ck = load_checkpoint(out / 'best.pt')
    srcs = [load_checkpoint(d / 'run' / 'epochs' / f'epoch{e:03d}.pt')['model'] for e in (1, 2, 3)]
    w = 'backbone.0.weight'
    assert torch.allclose(ck['model'][w], sum(s[w] for s in srcs) / 3, atol=1e-6)        # the uniform average
    r = run('average', d / 'run', '--top', 2, '--no-bn-update', '--out', d / 'avg' / 'top2', cwd=d)
    info2 = json.loads((d / 'avg' / 'top2' / 'average.json').read_text())
    assert info2['method'] == 'top2' and info2['valid_f1_bn_recomputed'] is None
    assert tree_digest(d / 'run') == before                                                  # the run is untouched
    # the averaged run predicts a submission like any run
    run('predict', '--run', out, '--data', d / 'data' / 'eval', '--tta', 'none', '--out', d / 'p.csv', cwd=d)
    assert len(read_predictions(d / 'p.csv', d / 'data' / 'eval' / 'info.csv')) == 21


def test_not_enough_checkpoints_names_folder_and_fix(trained):
    d = trained
    r = run('average', d / 'run', '--swa', 5, cwd=d, ok=False)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert f"{d / 'run' / 'epochs'} holds 3 checkpoint(s)" in r.stderr and 'keep_last=3' in r.stderr, r.stderr
    assert f"maskcls train --config {d / 'run' / 'config.yaml'} --keep-last 5" in r.stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(['average', str(d / 'run'), '--top', '3']) == 2
    assert f"{d / 'run' / 'top'} holds 2" in err.getvalue() and '--top-k 3' in err.getvalue(), err.getvalue()
    assert not (d / 'run_swa5').exists() and not (d / 'run_top3').exists()              # nothing half-written


def test_corrupted_checkpoint_is_named(trained, tmp_path):
    bad = tmp_path / 'run'
    shutil.copytree(trained / 'run', bad)
    f = bad / 'epochs' / 'epoch002.pt'
    f.write_bytes(f.read_bytes()[:400])
    r = run('average', bad, '--swa', 3, '--out', tmp_path / 'out', cwd=trained, ok=False)
    assert r.returncode == 2 and str(f) in r.stderr and 'damaged' in r.stderr, r.stderr


def test_out_inside_the_run_is_refused(trained):
    d = trained
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(['average', str(d / 'run'), '--top', '1', '--out', str(d / 'run' / 'avg')]) == 2
    assert 'never writes into' in err.getvalue() and not (d / 'run' / 'avg').exists()


def test_cv_folder_averages_every_fold(trained, tmp_path):
    d = trained
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(['cv', '--data', str(d / 'data'), '--folds', '2', '--epochs', '2', '--keep-last', '2',
                     '--out', str(tmp_path / 'cv'), '--cache-dir', str(d / 'cache'), *TINY]) == 0
        before = tree_digest(tmp_path / 'cv')
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(['average', str(tmp_path / 'cv'), '--swa', '2', '--device', 'cpu']) == 0
    avg = tmp_path / 'cv_swa2'
    assert '(each fold)' in out.getvalue() and 'out-of-fold macro F1' in out.getvalue(), out.getvalue()
    assert sorted(p.name for p in avg.glob('fold*') if p.is_dir()) == ['fold0', 'fold1']
    oof = pd.read_csv(avg / 'oof.csv')
    assert len(oof) == 84 and sorted(oof['fold'].unique()) == [0, 1]                     # every image once
    assert (avg / 'folds.csv').read_text() == (tmp_path / 'cv' / 'folds.csv').read_text()
    assert tree_digest(tmp_path / 'cv') == before
