"""`maskcls pseudo` and `--pseudo` end to end: thresholds, the training table, pseudo rows never in validation or
in the folds; `maskcls ensemble --method stack` with OOF files; bad input."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.cli import main
from maskcls.rundir import read_oof
from maskcls.cv import run_cv
from maskcls.splits import split_for
from maskcls.layout import read_train
from maskcls.files import new_run_dir
from maskcls.submission import read_predictions
from maskcls.train import train_run
from conftest import tiny_config

pytestmark = pytest.mark.slow    # trains a run and two CVs

TINY = ['--img-size', '32', '24', '--batch-size', '16', '--no-tensorboard', '--top-k', '1', '--device', 'cpu']


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "Synthetic data (10 training people, 4 eval people with answers) and one 1-epoch training run."
    d = tmp_path_factory.mktemp('pseudo')
    torch.set_num_threads(1)
    assert main(['synth', '--out', str(d / 'data'), '--people', '10', '--eval-people', '4', '--seed', '1']) == 0
    assert main(['train', '--data', str(d / 'data'), '--epochs', '1', '--out', str(d / 'run'),
                 '--cache-dir', str(d / 'cache'), *TINY]) == 0
    return d


def pseudo(d, out, *th):
    return main(['pseudo', '--run', str(d / 'run'), '--data', str(d / 'data' / 'eval'), '--out', str(d / out),
                 '--device', 'cpu', *th])




def test_pseudo_command_respects_thresholds(work, capsys):
    d = work
    assert pseudo(d, 'ps', '--mask', '0.5', '--gender', '0.6', '--age', '0.4') == 0
    out = capsys.readouterr().out
    assert 'of 28 images' in out and 'pseudo.csv' in out and '--pseudo' in out, out
    every = pd.read_csv(d / 'ps' / 'all.csv')
    assert len(every) == 28 and 'answer' in every.columns
    want = (every['p_mask'] >= .5) & (every['p_gender'] >= .6) & (every['p_age'] >= .4)
    assert (every['keep'] == want).all()
    kept = pd.read_csv(d / 'ps' / 'pseudo.csv')
    assert list(kept.columns[:3]) == ['path', 'label', 'person'] and 'answer' not in kept.columns
    assert kept['path'].tolist() == every.loc[want, 'path'].tolist()
    assert kept['label'].between(0, 17).all()
    prov = json.loads((d / 'ps' / 'pseudo.json').read_text())
    assert prov['thresholds'] == dict(mask=.5, gender=.6, age=.4) and prov['kept'] == int(want.sum())
    assert prov['images'] == 28 and prov['views'] == ['identity', 'hflip'] and prov['run'].endswith('run')
    assert (d / 'ps' / 'confidence.png').stat().st_size > 0
    # thresholds 0: every image; a second call writes a new folder and leaves the first alone
    assert pseudo(d, 'ps', '--mask', '0', '--gender', '0', '--age', '0') == 0
    assert len(pd.read_csv(d / 'ps2' / 'pseudo.csv')) == 28 and len(pd.read_csv(d / 'ps' / 'pseudo.csv')) == len(kept)


def test_train_adds_pseudo_rows_to_training_only(work, capsys):
    d = work
    if not (d / 'ps2').exists(): assert pseudo(d, 'ps2', '--mask', '0', '--gender', '0', '--age', '0') == 0
    table = d / 'ps2' / 'pseudo.csv'
    cfg = tiny_config(d, pseudo=str(table))
    df = read_train(d / 'data')
    tr, va = split_for(cfg, df)
    tr0, va0 = split_for(tiny_config(d), df)
    assert tr['path'].tolist() == tr0['path'].tolist() and va['path'].tolist() == va0['path'].tolist()
    res = train_run(cfg, tr, va, new_run_dir(d / 'with'), progress=False)
    capsys.readouterr()
    ps = set(pd.read_csv(table)['path'])
    seen_tr, seen_va = set(res['trainer'].train_dl.df['path']), set(res['trainer'].valid_dl.df['path'])
    assert ps <= seen_tr and not ps & seen_va and res['pseudo_images'] == 28
    assert len(res['trainer'].train_dl.df) == len(tr) + 28 and len(res['valid_probs']) == len(va)
    # the command line: the option exists, reaches the run's config, and the run validates on real people only
    assert main(['train', '--data', str(d / 'data'), '--epochs', '1', '--out', str(d / 'cli_with'),
                 '--cache-dir', str(d / 'cache'), '--pseudo', str(table), *TINY]) == 0
    assert '28 pseudo-labelled images' in capsys.readouterr().out
    assert 'pseudo' in (d / 'cli_with' / 'config.yaml').read_text()
    m = pd.read_csv(d / 'cli_with' / 'metrics.csv')
    assert m['valid_images'].iloc[0] == len(va)


def test_cv_folds_unchanged_and_pseudo_never_validated(work):
    d = work
    if not (d / 'ps2').exists(): assert pseudo(d, 'ps2', '--mask', '0', '--gender', '0', '--age', '0') == 0
    df = read_train(d / 'data')
    torch.set_num_threads(1)
    run_cv(tiny_config(d, folds=2), df, d / 'cv_plain', progress=False)
    run_cv(tiny_config(d, folds=2, pseudo=str(d / 'ps2' / 'pseudo.csv')), df, d / 'cv_pseudo', progress=False)
    a, b = (pd.read_csv(d / n / 'folds.csv', dtype=str) for n in ('cv_plain', 'cv_pseudo'))
    assert a.equals(b)                                                   # the real people keep their folds
    ps = set(pd.read_csv(d / 'ps2' / 'pseudo.csv')['path'])
    for k in (0, 1):
        pa, pb = (pd.read_csv(d / n / f'fold{k}' / 'valid_preds.csv')['path'] for n in ('cv_plain', 'cv_pseudo'))
        assert pa.tolist() == pb.tolist() and not ps & set(pb)
    assert sorted(read_oof(d / 'cv_pseudo')[0]['path']) == sorted(df['path'])


def test_bad_pseudo_input(work, capsys, tmp_path):
    d = work
    assert main(['pseudo', '--run', str(tmp_path / 'nothing'), '--data', str(d / 'data' / 'eval'),
                 '--out', str(tmp_path / 'p')]) == 2
    assert 'holds no best.pt' in capsys.readouterr().err
    assert pseudo(d, 'bad_th', '--age', '1.5') == 2
    assert 'threshold of age: 1.5' in capsys.readouterr().err
    img = sorted((d / 'data' / 'eval' / 'images').glob('*.jpg'))[0]
    df = read_train(d / 'data')
    _, va = split_for(tiny_config(d), df)
    cases = {'path,class\n{img},3\n': "missing column(s) ['label']",
             'path,label\n{img},18\n': "line 2: label '18' is not a whole number in 0..17",
             'path,label\n{img},1\n{img},2\n': 'appears on lines 2, 3',
             'path,label\n{tmp}/gone.jpg,1\n': 'images do not exist',
             'path,label\n{val},1\n': 'are validation images'}
    for i, (text, msg) in enumerate(cases.items()):
        f = tmp_path / f'bad{i}.csv'
        f.write_text(text.format(img=img, tmp=tmp_path, val=va['path'].iloc[0]))
        rc = main(['train', '--data', str(d / 'data'), '--epochs', '1', '--out', str(tmp_path / f'r{i}'),
                   '--cache-dir', str(d / 'cache'), '--pseudo', str(f), *TINY])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and str(f) in err, (text, err)
    rc = main(['train', '--data', str(d / 'data'), '--epochs', '1', '--out', str(tmp_path / 'r'),
               '--cache-dir', str(d / 'cache'), '--pseudo', str(tmp_path / 'none.csv'), *TINY])
    assert rc == 2 and 'none.csv not found' in capsys.readouterr().err


@pytest.fixture(scope='module')
def members(work):
    "Two 2-fold CV members (other seeds, other loss), each with its oof.csv and its eval prediction file."
    d = work
    torch.set_num_threads(1)
    for i, extra in enumerate([[], ['--loss', 'focal']]):
        assert main(['cv', '--data', str(d / 'data'), '--folds', '2', '--epochs', '1', '--seed', str(i),
                     '--out', str(d / f'm{i}'), '--cache-dir', str(d / 'cache'), *TINY, *extra]) == 0
        assert main(['predict', '--run', str(d / f'm{i}'), '--data', str(d / 'data' / 'eval'),
                     '--out', str(d / f'm{i}.csv'), '--tta', 'none', '--device', 'cpu']) == 0
    return d


def test_ensemble_stack_end_to_end(members, capsys):
    d = members
    files = [str(d / f'm{i}.csv') for i in range(2)]
    oofs = [str(d / f'm{i}' / 'oof.csv') for i in range(2)]
    capsys.readouterr()
    assert main(['ensemble', *files, '--method', 'stack', '--oof', *oofs, '--info', str(d / 'data' / 'eval' / 'info.csv'),
                 '--out', str(d / 'stack.csv')]) == 0
    out = capsys.readouterr().out
    assert 'stack of 2 files' in out and 'grouped by person' in out, out
    p = read_predictions(d / 'stack.csv', expected=d / 'data' / 'eval' / 'info.csv')
    np.testing.assert_allclose(p.to_numpy().sum(1), 1, atol=1e-5)
    sub = pd.read_csv(d / 'stack_submission.csv')
    assert (sub['ans'].to_numpy() == p.to_numpy().argmax(1)).all() and len(sub) == 28


def test_ensemble_stack_bad_oof(members, capsys, tmp_path):
    d = members
    files = [str(d / f'm{i}.csv') for i in range(2)]
    base = ['ensemble', *files, '--method', 'stack', '--out', str(tmp_path / 's.csv')]
    assert main(base) == 2 and 'one OOF file per member' in capsys.readouterr().err
    assert main(base + ['--oof', str(d / 'm0' / 'oof.csv'), str(tmp_path / 'missing.csv')]) == 2
    assert 'missing.csv' in capsys.readouterr().err
    short = tmp_path / 'short.csv'
    pd.read_csv(d / 'm1' / 'oof.csv').iloc[7:].to_csv(short, index=False)
    assert main(base + ['--oof', str(d / 'm0' / 'oof.csv'), str(short)]) == 2
    assert 'covers other images' in capsys.readouterr().err
    nop = tmp_path / 'noperson.csv'
    pd.read_csv(d / 'm1' / 'oof.csv').drop(columns='person').to_csv(nop, index=False)
    assert main(base + ['--oof', str(d / 'm0' / 'oof.csv'), str(nop)]) == 2
    assert "lacks column(s) ['person']" in capsys.readouterr().err
    assert main(base + ['--oof', str(d / 'm0' / 'oof.csv'), str(d / 'm1' / 'oof.csv'), '--weights', '1,2']) == 2
    assert 'give no weights' in capsys.readouterr().err
