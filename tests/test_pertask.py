"""Models of one attribute (`--task mask|gender|age`) and their composition (`maskcls ensemble --compose`), end to end."""
import json

import numpy as np
import pandas as pd
import pytest

from maskcls.labels import attribute_task, prob_cols
from maskcls.layout import read_train
from maskcls.rundir import CVDir
from maskcls.submission import read_predictions, read_submission, write_predictions
from conftest import link_synth12, run

TINY = ['--img-size', '32', '24', '--batch-size', '16', '--no-tensorboard', '--epochs', '1']



@pytest.fixture(scope='module')
def data(tmp_path_factory, synth12):
    return link_synth12(tmp_path_factory.mktemp('pertask'), synth12)


@pytest.mark.slow
def test_train_one_attribute_records_its_task_and_predicts_its_columns(data):
    r = run('train', '--data', data / 'data', '--task', 'gender', '--out', data / 'runs' / 'g', *TINY, cwd=data)
    assert 'best macro F1' in r.stdout
    run_dir = data / 'runs' / 'g'
    assert json.loads((run_dir / 'task.json').read_text())['classes'] == ['Male', 'Female']
    assert pd.read_csv(run_dir / 'metrics.csv').filter(like='valid_f1').columns.tolist() == ['valid_f1',
                                                                                            'valid_f1_gender']
    info = data / 'data' / 'eval' / 'info.csv'
    r = run('predict', '--run', run_dir, '--data', data / 'data' / 'eval', '--out', data / 'g.csv', cwd=data)
    p = read_predictions(data / 'g.csv', info, n_classes=2)
    assert len(p) == 21 and np.allclose(p.sum(axis=1), 1, atol=1e-4)
    assert not (data / 'g_submission.csv').exists() and '--compose' in r.stdout       # no 2-class "submission"
    assert 'gender only: macro F1' in r.stdout                                         # scored on the gender codes


@pytest.mark.slow
def test_three_attribute_cvs_compose_to_18_classes(data):
    for t in ('mask', 'gender', 'age'):
        run('cv', '--data', data / 'data', '--task', t, '--folds', 2, '--out', data / f'cv_{t}', *TINY, cwd=data)
        assert pd.read_csv(data / f'cv_{t}' / 'oof.csv').filter(regex=r'^p\d+$').shape[1] == (2 if t == 'gender' else 3)
    folds = [pd.read_csv(data / f'cv_{t}' / 'folds.csv') for t in ('mask', 'gender', 'age')]
    assert folds[0].equals(folds[1]) and folds[0].equals(folds[2])                    # the same people in each fold
    # OOF: CV folders (their oof.csv, checked against task.json), scored as 18 classes
    r = run('ensemble', '--compose', data / 'cv_mask', data / 'cv_gender', data / 'cv_age', '--out',
            data / 'oof18.csv', cwd=data)
    assert 'composed out-of-fold predictions of 84 images' in r.stdout and 'macro F1' in r.stdout
    oof = pd.read_csv(data / 'oof18.csv')
    truth = read_train(data / 'data').set_index('path')['label']
    assert (oof['label'].to_numpy() == truth.loc[oof['path']].to_numpy()).all()      # the 18-class labels
    assert np.allclose(oof[prob_cols()].sum(axis=1), 1, atol=1e-5)
    # eval predictions of the three fold ensembles -> 18-class predictions and a submission
    ev, info = data / 'data' / 'eval', data / 'data' / 'eval' / 'info.csv'
    for t in ('mask', 'gender', 'age'):
        run('predict', '--run', data / f'cv_{t}', '--data', ev, '--tta', 'none', '--out', data / f'{t}.csv', cwd=data)
    run('ensemble', '--compose', data / 'mask.csv', data / 'gender.csv', data / 'age.csv', '--info', info, '--out',
        data / 'e18.csv', cwd=data)
    p = read_predictions(data / 'e18.csv', info)
    sub = read_submission(data / 'e18_submission.csv', info)
    assert len(p) == 21 and (sub.to_numpy() == p.to_numpy().argmax(1)).all()


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f'{i:040x}.jpg' for i in range(4)]
    out = {}
    for name, k in (('mask', 3), ('gender', 2), ('age', 3)):
        out[name] = write_predictions(tmp_path / f'{name}.csv', ids, rng.dirichlet(np.ones(k), 4), k)
    write_predictions(tmp_path / 'gender_few.csv', ids[:3], rng.dirichlet(np.ones(2), 3), 2)
    write_predictions(tmp_path / 'all18.csv', ids, rng.dirichlet(np.ones(18), 4))
    return tmp_path, out


@pytest.mark.parametrize('which,msg', [
    (('gender', 'mask', 'age'), 'gender.csv: a mask file holds 3 probability columns p0..p2, this one holds 2'),
    (('mask', 'gender_few', 'age'), 'gender_few.csv covers other images than'),
    (('all18', 'gender', 'age'), 'all18.csv: a mask file holds 3 probability columns p0..p2, this one holds 18'),
])
def test_compose_bad_files_name_the_file(files, which, msg):
    d, _ = files
    r = run('ensemble', '--compose', *(d / f'{w}.csv' for w in which), '--out', d / 'out.csv', cwd=d, ok=False)
    assert r.returncode == 2 and msg in r.stderr, r.stderr
    assert not (d / 'out.csv').exists()


def test_compose_cv_folder_in_the_wrong_place(tmp_path):
    for name in ('mask', 'gender', 'age'):       # CV folders as run_cv leaves them: task.json and oof.csv
        (tmp_path / f'cv_{name}').mkdir()
        CVDir(tmp_path / f'cv_{name}').save_task(attribute_task(name))
    r = run('ensemble', '--compose', *(tmp_path / f'cv_{n}' for n in ('age', 'gender', 'mask')), '--out',
            tmp_path / 'o.csv', cwd=tmp_path, ok=False)
    assert r.returncode == 2 and "holds a run of task 'age only', but a mask model goes in this place" in r.stderr


def test_compose_and_member_files_together_fail(files):
    d, f = files
    r = run('ensemble', f['mask'], '--compose', f['mask'], f['gender'], f['age'], '--out', d / 'o.csv', cwd=d, ok=False)
    assert r.returncode == 2 and 'not both' in r.stderr
    r = run('ensemble', '--out', d / 'o.csv', cwd=d, ok=False)
    assert r.returncode == 2 and 'no member files' in r.stderr
