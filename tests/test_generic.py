"""Any ImageFolder dataset, not only the competition: train, predict, cross-validate and ensemble through the
installed `maskcls` command on a small synthetic 4-class tree; the run's own classes come out, never mask/gender/age."""
import json, shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from conftest import SHAPES as CLASSES, run, write_shapes

pytestmark = pytest.mark.slow    # every test here trains or predicts with a trained run

FAST = ['--model', 'tiny', '--img-size', '32', '32', '--batch-size', '16', '--no-tensorboard']
COMPETITION_WORDS = ('mask', 'gender', 'age ')


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A training tree, a test tree of the same classes, one trained run (the slow part, shared by the tests)."
    d = tmp_path_factory.mktemp('generic')
    write_shapes(d / 'shapes', 40, seed=0); write_shapes(d / 'test', 10, seed=1)
    r = run('train', '--data', d / 'shapes', '--epochs', 3, '--out', d / 'run', '--cache-dir', d / 'cache', *FAST,
            cwd=d)
    return d, r.stdout


def test_train_reports_its_own_classes(work):
    d, out = work
    assert '160 images of 4 classes' in out and 'classes: circle, cross, square, triangle' in out, out
    assert not any(w in out for w in COMPETITION_WORDS), out        # no mask / gender / age anywhere
    task = json.loads((d / 'run' / 'task.json').read_text())
    assert task['classes'] == CLASSES and task['attributes'] == []
    m = pd.read_csv(d / 'run' / 'metrics.csv')
    assert {f'valid_f1_{c}' for c in CLASSES} <= set(m.columns) and not any('f1_mask' in c for c in m.columns)
    assert m['score'].max() > 0.7, m                          # the tiny CNN learns coloured shapes in 3 epochs


def test_predict_plain_folder_no_info_csv(work, tmp_path):
    d, _ = work
    plain = tmp_path / 'plain'
    plain.mkdir()
    for f in sorted((d / 'test').rglob('*.png'))[::5]: shutil.copy(f, plain / f.name)
    (plain / '._junk.png').write_bytes(b'mac')                          # macOS junk is skipped, never read
    r = run('predict', '--run', d / 'run', '--data', plain, '--out', tmp_path / 'p.csv', '--device', 'cpu', cwd=d)
    assert 'no info.csv' in r.stdout and 'no submission' in r.stdout, r.stdout
    p = pd.read_csv(tmp_path / 'p.csv', dtype={'ImageID': str})
    assert list(p.columns) == ['ImageID', 'p0', 'p1', 'p2', 'p3']
    assert sorted(p['ImageID']) == sorted(f.name for f in plain.glob('*.png') if not f.name.startswith('._'))
    np.testing.assert_allclose(p[['p0', 'p1', 'p2', 'p3']].sum(axis=1), 1, atol=1e-5)
    assert not list(tmp_path.glob('*submission*'))


def test_predict_imagefolder_tree_is_scored(work, tmp_path):
    d, _ = work
    r = run('predict', '--run', d / 'run', '--data', d / 'test', '--out', tmp_path / 'p.csv', '--tta', 'none',
            '--device', 'cpu', cwd=d)
    p = pd.read_csv(tmp_path / 'p.csv')
    assert len(p) == 40 and p['ImageID'].iloc[0] == 'circle/circle_000.png'
    y = p['ImageID'].str.split('/').str[0].map(CLASSES.index)
    f1 = f1_score(y, p[[f'p{c}' for c in range(4)]].to_numpy().argmax(1), average='macro')
    assert f'against the folder names (ImageFolder tree): macro F1 {f1:.4f}' in r.stdout, r.stdout   # the right score
    assert f1 > 0.7 and 'F1 per class: circle' in r.stdout
    assert not any(w in r.stdout for w in COMPETITION_WORDS)


def test_cv_then_ensemble(work, tmp_path):
    d, _ = work
    r = run('cv', '--data', d / 'shapes', '--folds', 2, '--epochs', 2, '--out', tmp_path / 'cv',
            '--cache-dir', d / 'cache', *FAST, cwd=d)
    assert 'out-of-fold macro F1' in r.stdout and 'F1 per class: circle' in r.stdout
    assert not any(w in r.stdout for w in COMPETITION_WORDS), r.stdout
    oof = pd.read_csv(tmp_path / 'cv' / 'oof.csv')
    assert len(oof) == 160 and {'p3'} <= set(oof.columns) and 'p4' not in oof.columns
    assert json.loads((tmp_path / 'cv' / 'task.json').read_text())['classes'] == CLASSES
    run('predict', '--run', tmp_path / 'cv', '--data', d / 'test', '--out', tmp_path / 'cv.csv', '--device', 'cpu',
        cwd=d)
    run('predict', '--run', d / 'run', '--data', d / 'test', '--out', tmp_path / 'one.csv', '--device', 'cpu', cwd=d)
    r = run('ensemble', tmp_path / 'cv.csv', tmp_path / 'one.csv', '--out', tmp_path / 'ens.csv', cwd=d)
    a, b, e = (pd.read_csv(tmp_path / f).set_index('ImageID') for f in ('cv.csv', 'one.csv', 'ens.csv'))
    assert list(e.columns) == ['p0', 'p1', 'p2', 'p3'] and len(e) == 40
    np.testing.assert_allclose(e.to_numpy(), (a.loc[e.index].to_numpy() + b.loc[e.index].to_numpy()) / 2, atol=1e-6)
    run('ensemble', tmp_path / 'cv.csv', tmp_path / 'one.csv', '--method', 'hard', '--out', tmp_path / 'hard.csv',
        cwd=d)
    h = pd.read_csv(tmp_path / 'hard.csv')
    assert set(h.columns) == {'ImageID', 'ans'} and h['ans'].between(0, 3).all()
