"""Training engine pieces a notebook can't show: Weights & Biases offline logging, wandb missing, bad loss options."""
import builtins

import pytest
import torch.nn as nn

from maskcls.config import Config
from maskcls.models import create_model
from maskcls.loader import ToyBatches, toy_data
from maskcls.files import new_run_dir
from maskcls.train import Trainer


def toy_trainer(tmp_path, **kw):
    xt, yt = toy_data(72, 0); xv, yv = toy_data(36, 1)
    cfg = Config(epochs=2, tensorboard=False, **kw)
    return Trainer(create_model('tiny'), nn.CrossEntropyLoss(), cfg, ToyBatches(xt, yt, 32, True),
                   ToyBatches(xv, yv, 64),
                   run_dir=new_run_dir(tmp_path / 'run'), progress=False)


def test_wandb_offline_logs_each_epoch(tmp_path, monkeypatch):
    import wandb                                  # a dev requirement: `make test` installs it
    monkeypatch.setenv('WANDB_SILENT', 'true')
    logged, real_init = [], wandb.init
    def spy_init(*a, **kw):                       # the real offline run, with its log calls recorded
        run = real_init(*a, **kw)
        real_log = run.log
        def log(row, *la, **lk): logged.append(dict(row)); return real_log(row, *la, **lk)
        run.log = log
        return run
    monkeypatch.setattr(wandb, 'init', spy_init)
    tr = toy_trainer(tmp_path, wandb='offline', wandb_project='maskcls-test')
    tr.fit()
    assert [r['epoch'] for r in logged] == [1, 2] and all('valid_f1' in r for r in logged)
    # an offline run, ready for `wandb sync`
    assert len(list((tmp_path / 'run' / 'wandb').glob('offline-run-*/run-*.wandb'))) == 1


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    real_import = builtins.__import__
    def no_wandb(name, *a, **kw):
        if name == 'wandb': raise ImportError('no wandb')
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, '__import__', no_wandb)
    with pytest.raises(ImportError, match='pip install wandb'): toy_trainer(tmp_path, wandb='online').fit()


def test_non_finite_loss_stops_with_advice(tmp_path):
    tr = toy_trainer(tmp_path, lr=1e6, clip_grad=0.0)
    tr.loss_fn = lambda out, y: (out * float('nan')).sum()
    with pytest.raises(FloatingPointError, match='lower --lr'): tr.fit()
