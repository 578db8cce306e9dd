"""Cross validation across processes: parallel folds, DDP with gloo, resuming an interrupted CV."""
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.cv import run_cv
from maskcls.labels import PROB_COLS
from maskcls.rundir import read_oof
from maskcls.splits import fold_balance, image_fold, person_folds
from maskcls.layout import read_train
from maskcls.synth import make_dataset
import maskcls.train as train_mod
from conftest import tiny_config


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('cvdata')
    make_dataset(d / 'data', people=15, eval_people=0, seed=4, progress=False)
    return d, read_train(d / 'data')


def cfg_for(d, **kw): return tiny_config(d, **{'folds': 3, 'epochs': 2, **kw})   # 3 folds of 2 epochs


@pytest.mark.slow    # draws 300 synthetic people
def test_folds_group_people_and_keep_strata(tmp_path):
    make_dataset(tmp_path / 'big', people=300, eval_people=0, seed=0, progress=False)   # realistic mix of strata
    df = read_train(tmp_path / 'big')
    folds = person_folds(df, 5, seed=0)
    fi = image_fold(df, folds)
    assert pd.Series(fi).groupby(df['person'].to_numpy()).nunique().max() == 1          # no person in two folds
    assert sorted(np.bincount(folds['fold'])) in ([60] * 5,)
    bal = fold_balance(df, fi)
    gap = (bal.drop(index='all') - bal.loc['all']).abs().to_numpy().max()
    # each fold's gender x age mix ~ the whole's
    assert gap < 0.04, bal


@pytest.mark.slow
def test_parallel_folds_equal_sequential(data):
    d, df = data
    torch.set_num_threads(1)                       # the worker processes use one thread each: same arithmetic
    seq = run_cv(cfg_for(d), df, d / 'seq', progress=False)
    par = run_cv(cfg_for(d), df, d / 'par', devices=['cpu', 'cpu'], progress=False)
    a, b = read_oof(d / 'seq')[0].sort_values('path'), read_oof(d / 'par')[0].sort_values('path')
    # every image exactly once
    assert len(a) == len(df) and a['path'].is_unique and sorted(a['path']) == sorted(df['path'])
    assert (a['path'].to_numpy() == b['path'].to_numpy()).all()
    np.testing.assert_allclose(a[PROB_COLS].to_numpy(), b[PROB_COLS].to_numpy(), atol=1e-5)
    assert seq['f1'] == pytest.approx(par['f1'])


@pytest.mark.slow
def test_interrupted_cv_resumes_to_the_same_result(data, monkeypatch):
    d, df = data
    torch.set_num_threads(1)
    full = run_cv(cfg_for(d), df, d / 'full', progress=False)
    save = train_mod.Trainer._save
    def crash(self, row, improved, use_ema):       # the machine dies right after fold 1 saved its epoch 1
        save(self, row, improved, use_ema)
        if self.cfg.fold == 1 and row['epoch'] == 1: raise KeyboardInterrupt
    monkeypatch.setattr(train_mod.Trainer, '_save', crash)
    with pytest.raises(KeyboardInterrupt): run_cv(cfg_for(d), df, d / 'broken', progress=False)
    monkeypatch.setattr(train_mod.Trainer, '_save', save)
    assert (d / 'broken' / 'fold0' / 'done.json').exists() and not (d / 'broken' / 'fold1' / 'done.json').exists()
    t0 = (d / 'broken' / 'fold0' / 'best.pt').stat().st_mtime
    res = run_cv(cfg_for(d), df, d / 'broken', resume=True, progress=False)
    assert (d / 'broken' / 'fold0' / 'best.pt').stat().st_mtime == t0                    # the finished fold was skipped
    assert pd.read_csv(d / 'broken' / 'fold1' / 'metrics.csv')['epoch'].tolist() == [1, 2]
    a, b = read_oof(d / 'full')[0].sort_values('path'), read_oof(d / 'broken')[0].sort_values('path')
    np.testing.assert_allclose(a[PROB_COLS].to_numpy(), b[PROB_COLS].to_numpy(), atol=1e-5)
    assert res['f1'] == pytest.approx(full['f1'])


@pytest.mark.slow
def test_resume_refuses_other_options(data):
    d, df = data
    with pytest.raises(ValueError, match='epochs'):
        run_cv(cfg_for(d, epochs=3), df, d / 'full', resume=True, progress=False)


@pytest.mark.slow
def test_ddp_two_cpu_processes_count_every_validation_image_once(data):
    d, df = data
    exe = Path(sys.executable).with_name('maskcls')
    # 15 people, fold 0 of 3 holds 5 people = 35 validation images: an odd count that DistributedSampler would pad to 36
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', str(exe), 'train', '--data',
           str(d / 'data'),
           '--fold', '0', '--folds', '3', '--epochs', '2', '--img-size', '32', '24', '--batch-size', '8',
           '--out', str(d / 'ddp'),
           '--cache-dir', str(d / 'cache'), '--device', 'cpu', '--no-tensorboard']
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'in 2 process(es)' in r.stdout
    m = pd.read_csv(d / 'ddp' / 'metrics.csv')
    n_valid = int((image_fold(df, person_folds(df, 3, 0)) == 0).sum())
    assert n_valid % 2 == 1 and m['valid_images'].tolist() == [n_valid, n_valid]
    # one run folder, written by process 0
    assert (d / 'ddp' / 'best.pt').exists() and not (d / 'ddp2').exists()
