"""Hyperparameter search: spaces map to the right suggestions, bad keys fail by name, pruning prunes, studies resume,
best_config repeats the best trial."""
import warnings
from dataclasses import replace

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt

import numpy as np
import optuna
import pandas as pd
import pytest
import torch.nn as nn
from optuna.trial import FixedTrial, TrialState

import maskcls.hpo as hpo
from maskcls.config import Config, ConfigError, load_config
from maskcls.splits import split_for
from maskcls.ensemble import bootstrap_f1
from maskcls.hpo import SEARCH_SAMPLERS, SPACE, best_config, check_space, grid_space, make_pruner, make_sampler, suggest
from maskcls.hpo_page import curve_colors, save_search_figures, search_figures, trials_table, write_search_page
from maskcls.hpo_workers import STUDY_NAME, open_study, tune
from maskcls.layout import read_train
from maskcls.models import create_model
from maskcls.synth import make_dataset
from maskcls.loader import ToyBatches, toy_data
from maskcls.sampling import SAMPLERS
from maskcls.runtime import seed_everything
from maskcls.train import Trainer, train_run

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "15 synthetic people and a tiny base config (32 x 24 pixels, 1 epoch, CPU, no TensorBoard)."
    root = tmp_path_factory.mktemp('hpo')
    make_dataset(root / 'data', people=15, eval_people=0, seed=0, progress=False)
    base = Config(data=str(root / 'data'), img_size=(32, 24), model='tiny', epochs=1, batch_size=32,
                  cache_dir=str(root / 'cache'), tensorboard=False, device='cpu')   # cpu: a retrain repeats exactly
    return read_train(root / 'data'), base


# -- the space

def test_suggest_maps_each_kind():
    space = dict(lr=('log', 1e-4, 1e-2), label_smoothing=('float', 0.0, 0.2, 0.05), epochs=('int', 2, 10, 2),
                 loss=('cat', ['ce', 'focal']), img_size=('cat', [(128, 96), (256, 192)]), old_age=('cat', [58, 60]))
    p = suggest(FixedTrial(dict(lr=3e-3, label_smoothing=0.15, epochs=6, loss='focal', img_size='[128, 96]',
                                old_age=60)), space)
    assert p == dict(lr=3e-3, label_smoothing=0.15, epochs=6, loss='focal', img_size=(128, 96), old_age=60)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t = study.ask(); p = suggest(t, space)
    d = t.distributions
    assert isinstance(d['lr'], optuna.distributions.FloatDistribution) and d['lr'].log
    assert (d['lr'].low, d['lr'].high) == (1e-4, 1e-2)
    assert not d['label_smoothing'].log and d['label_smoothing'].step == 0.05
    assert isinstance(d['epochs'], optuna.distributions.IntDistribution) and d['epochs'].step == 2
    assert d['img_size'].choices == ('[128, 96]', '[256, 192]') and p['img_size'] in ((128, 96), (256, 192))
    assert 1e-4 <= p['lr'] <= 1e-2 and p['epochs'] in (2, 4, 6, 8, 10)
    Config(**p)                                             # every suggestion is a valid Config value


def test_unknown_key_fails_naming_it():
    with pytest.raises(ConfigError, match="learning_rate.*did you mean 'lr'"):
        suggest(FixedTrial(dict(learning_rate=1e-3)), dict(learning_rate=('log', 1e-4, 1e-2)))
    with pytest.raises(ConfigError, match="'batchsize'"):
        check_space(dict(lr=('log', 1e-4, 1e-2), batchsize=('int', 16, 64)))
    with pytest.raises(ConfigError, match="search space 'lr': unknown kind 'uniform'"):
        suggest(FixedTrial(dict(lr=1e-3)), dict(lr=('uniform', 1e-4, 1e-2)))


@pytest.mark.parametrize('space, msg', [
    (dict(seed=('int', 0, 10)), "'seed': cannot be searched"),
    (dict(folds=('int', 3, 5)), 'validation split'),
    (dict(lr=('log', -1, 1e-2)), 'low > 0'),
    (dict(lr=('float', 1e-2, 1e-3)), 'below high'),
    (dict(lr=('log', 1e-4)), r"\('log', low, high\)"),
    (dict(epochs=('int', 2.5, 8)), 'whole numbers'),
    (dict(loss=('cat', [])), r"\('cat', \[choice"),
    (dict(loss=('cat', ['ce', 'bce'])), "'loss': 'bce' is not a valid value"),
    (dict(mix_p=('float', 0.5, 1.5)), "'mix_p': 1.5"),
])
def test_check_space_rejects_bad_spaces(space, msg):
    with pytest.raises(ConfigError, match=msg): check_space(space)


def test_check_space_normalises_lists():
    assert check_space(dict(lr=['log', 1e-4, 1e-2], loss=['cat', ('ce', 'focal')])) == dict(lr=('log', 1e-4, 1e-2),
                                                                                            loss=('cat',
                                                                                                  ['ce', 'focal']))
    assert set(check_space(SPACE)) == set(SPACE)


def test_check_space_checks_model_names():
    "The config no longer knows the models: check_space asks maskcls.models, before any trial trains."
    assert check_space(dict(model=('cat', ['tiny', 'resnet18'])))['model'] == ('cat', ['tiny', 'resnet18'])
    with pytest.raises(ConfigError, match="'model': 'resnet19' is not a valid value.*did you mean resnet18"):
        check_space(dict(model=('cat', ['tiny', 'resnet19'])))


# -- samplers and pruners

def test_search_samplers_are_not_the_class_balance_samplers():
    assert SEARCH_SAMPLERS == ('tpe', 'random', 'grid') and not hasattr(hpo, 'SAMPLERS')
    assert 'weighted' in SAMPLERS                                  # sampling.SAMPLERS: against class imbalance
    for k in SEARCH_SAMPLERS:
        assert isinstance(make_sampler(k, dict(lr=('log', 1e-4, 1e-2))), optuna.samplers.BaseSampler)
    with pytest.raises(ValueError, match="'bayes'.*tpe"): make_sampler('bayes')

def test_grid_sampler_visits_every_point_once():
    space = dict(lr=('log', 1e-4, 1e-2), loss=('cat', ['ce', 'focal']))
    assert grid_space(space)['lr'] == pytest.approx([1e-4, 1e-3, 1e-2])
    s = optuna.create_study(sampler=make_sampler('grid', space, seed=0))
    s.optimize(lambda t: float(np.log10(suggest(t, space)['lr'])), n_trials=20)   # the grid stops the study at 6
    pts = {(t.params['lr'], t.params['loss']) for t in s.trials}
    assert len(s.trials) == 6 and len(pts) == 6


def test_median_pruner_prunes_bad_trials():
    "Three good finished trials, then trials whose curves are far below: each stops at its first report."
    def objective(t):
        level = 0.8 if t.number < 3 else 0.1
        for e in range(1, 6):
            t.report(level + 0.01 * e, e)
            if t.should_prune(): raise optuna.TrialPruned()
        return level
    s = optuna.create_study(direction='maximize', pruner=make_pruner(True))
    s.optimize(objective, n_trials=6)
    states = [t.state for t in s.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED] * 3
    assert [len(t.intermediate_values) for t in s.trials[3:]] == [1, 1, 1]
    assert isinstance(make_pruner(False), optuna.pruners.NopPruner)
    assert isinstance(make_pruner('halving'), optuna.pruners.SuccessiveHalvingPruner)
    with pytest.raises(ValueError, match="'hyperband'"): make_pruner('hyperband')


@pytest.mark.slow
def test_trainer_on_epoch_hook_prunes_a_real_training():
    "TrialPruned raised from on_epoch stops Trainer.fit after that epoch (the hook tune relies on)."
    xt, yt = toy_data(180, seed=0); xv, yv = toy_data(90, seed=1)
    s = optuna.create_study(direction='maximize', pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    seen = {}
    def objective(t):
        lr = 1e-2 if t.number == 0 else 1e-7                  # the second trial cannot learn anything
        seed_everything(0)
        cfg = Config(model='tiny', epochs=3, lr=lr, batch_size=32, tensorboard=False)
        def on_epoch(row):
            t.report(row['score'], row['epoch'])
            if t.should_prune(): raise optuna.TrialPruned()
        tr = Trainer(create_model('tiny'), nn.CrossEntropyLoss(), cfg, ToyBatches(xt, yt, 32, True),
                     ToyBatches(xv, yv, 64),
                     progress=False, on_epoch=on_epoch)
        seen[t.number] = tr
        tr.fit()
        return tr.best
    s.optimize(objective, n_trials=2)
    assert s.trials[0].state == TrialState.COMPLETE and len(seen[0].history) == 3
    assert s.trials[1].state == TrialState.PRUNED and len(seen[1].history) == 1


def fake_train_run(scores):
    "A stand-in for train_run that reports `scores(cfg)` per epoch through on_epoch, without training."
    calls = []
    def run(cfg, tr, va, run_dir=None, progress=True, on_epoch=None, **kw):
        hist = []
        for e in range(1, cfg.epochs + 1):
            row = dict(epoch=e, score=scores(cfg, e), valid_acc=0.5)
            hist.append(row); calls.append((cfg.lr, e))
            if on_epoch: on_epoch(row)
        return dict(history=hist, best=max(r['score'] for r in hist), valid_probs=None)
    return run, calls


@pytest.mark.slow
def test_tune_prunes_through_on_epoch(data, tmp_path, monkeypatch):
    "Trials 0 and 1 score high at every epoch, later ones low: the median pruner stops each later one after epoch 1."
    df, base = data
    number = lambda cfg: int(cfg.out.rsplit('trial', 1)[1])      # tune trains trial k into out/trial<k>
    run, calls = fake_train_run(lambda cfg, e: {0: 0.9, 1: 0.95}.get(number(cfg), 0.1) * e / 4)
    monkeypatch.setattr(hpo, 'train_run', run)
    s = tune(replace(base, epochs=4), df, dict(lr=('log', 1e-3, 1e-2)), n_trials=5, out=tmp_path / 'h',
             sampler='random',
             pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 3
    assert trials_table(s)['steps'].tolist() == [4, 4, 1, 1, 1]
    assert len(calls) == 4 + 4 + 1 + 1 + 1                               # the training loops really stopped
    assert s.best_trial.number == 1
    assert best_config(s).lr == s.trials[1].params['lr'] == load_config(tmp_path / 'h' / 'best_config.yaml').lr
    assert {'search.png', 'search_history.png', 'search_curves.png'} <= {p.name for p in (tmp_path / 'h').iterdir()}


@pytest.mark.slow
def test_failed_trials_are_recorded_and_the_search_goes_on(data, tmp_path, monkeypatch):
    df, base = data
    def diverge(cfg, *a, **kw): raise FloatingPointError('loss is nan at epoch 1, batch 0')
    monkeypatch.setattr(hpo, 'train_run', diverge)
    s = tune(base, df, dict(lr=('log', 1e-3, 1e-2)), n_trials=3, out=tmp_path / 'h', sampler='random')
    assert [t.state for t in s.trials] == [TrialState.FAIL] * 3
    assert (tmp_path / 'h' / 'trials.csv').exists() and not (tmp_path / 'h' / 'best_config.yaml').exists()


# -- storage

def test_study_resumes_from_its_sqlite_file(tmp_path):
    f = lambda t: -(np.log10(t.suggest_float('lr', 1e-4, 1e-1, log=True)) + 2.5) ** 2
    s = open_study(tmp_path / 's', sampler=make_sampler('tpe', seed=0))
    s.optimize(f, n_trials=4)
    first = [(t.number, t.value) for t in s.trials]
    del s
    s = open_study(tmp_path / 's', resume=True, sampler=make_sampler('tpe', seed=4))
    assert [(t.number, t.value) for t in s.trials] == first              # read back from study.db
    s.optimize(f, n_trials=4)
    assert [t.number for t in s.trials] == list(range(8))
    assert len(optuna.load_study(study_name=STUDY_NAME,
                                 storage=f"sqlite:///{tmp_path / 's' / 'study.db'}").trials) == 8
    with pytest.raises(FileExistsError, match='resume'): open_study(tmp_path / 's')
    with pytest.raises(FileNotFoundError, match='study.db'): open_study(tmp_path / 'none', resume=True)


@pytest.mark.slow
def test_tune_resumes_and_best_config_repeats_the_best_trial(data, tmp_path):
    df, base = data
    space = dict(lr=('log', 1e-3, 3e-2), label_smoothing=('float', 0.0, 0.2), old_age=('cat', [58, 59, 60]))
    s = tune(base, df, space, n_trials=1, out=tmp_path / 'h', sampler='random', seed=0)
    assert s.user_attrs['out'] == str(tmp_path / 'h')
    assert sorted(p.name for p in (tmp_path / 'h' / 'trial0').iterdir()) == ['best.pt', 'config.yaml', 'metrics.csv',
                                                                             'task.json']
    s = tune(base, df, space, n_trials=1, out=tmp_path / 'h', sampler='random', seed=0, resume=True)
    assert len(s.trials) == 2 and s.trials[0].params != s.trials[1].params      # the resumed sampler is reseeded
    assert len(pd.read_csv(tmp_path / 'h' / 'trials.csv')) == 2
    page = (tmp_path / 'h' / 'index.html').read_text()
    assert f'Best: trial {s.best_trial.number}, macro F1 {s.best_value:.4f}' in page and '>old_age</th>' in page
    best = load_config(tmp_path / 'h' / 'best_config.yaml')
    assert best == replace(base, **s.best_params) == best_config(s)
    again = train_run(best, *split_for(best, df), progress=False)
    assert again['best'] == pytest.approx(s.best_value, abs=1e-9)
    with pytest.raises(ValueError, match="space 'old_age'"):
        tune(base, df, {**space, 'old_age': ('cat', [58, 60])}, 1, tmp_path / 'h', resume=True)
    with pytest.raises(ValueError, match='img_size'):
        tune(replace(base, img_size=(40, 32)), df, space, 1, tmp_path / 'h', resume=True)
    with pytest.raises(ValueError, match="objective"):
        tune(base, df, space, 1, tmp_path / 'h', objective='kfold')
    # where it runs may change
    s2 = tune(replace(base, device='auto', workers=1), df, space, n_trials=0, out=tmp_path / 'h', resume=True)
    assert len(s2.trials) == 2


# -- figures

def toy_curve_study(n_trials):
    "A search whose trials report 3 steps each; the median pruner stops the bad ones."
    space = dict(lr=('log', 1e-4, 1e-1), loss=('cat', ['ce', 'focal']), old_age=('cat', [58, 60]))
    def objective(t):
        q = -(np.log10(suggest(t, space)['lr']) + 2) ** 2
        for e in range(1, 4):
            t.report(q + e, e)
            if t.should_prune(): raise optuna.TrialPruned()
        return q + 3
    s = optuna.create_study(direction='maximize', sampler=optuna.samplers.RandomSampler(seed=0),
                            pruner=make_pruner(True))
    s.optimize(objective, n_trials=n_trials)
    return s


def test_search_figures_label_each_curve_and_warn_nothing():
    s = toy_curve_study(12)
    style = dict(plt.rcParams)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        figs = search_figures(s)
    assert caught == [], [str(w.message) for w in caught]                   # ExperimentalWarning silenced on purpose
    assert dict(plt.rcParams) == style                                      # Optuna's ggplot style did not leak
    assert list(figs) == ['history', 'importances', 'params', 'parallel', 'curves']
    labels = [t.get_text() for t in figs['curves'].axes[0].get_legend().get_texts()]
    pruned = {t.number for t in s.trials if t.state == TrialState.PRUNED}
    assert pruned and labels == [f'{t.number}' + (' pruned' if t.number in pruned else '') for t in s.trials]
    lines = figs['curves'].axes[0].get_lines()                              # one colour per trial; pruned dashed
    assert len({matplotlib.colors.to_hex(x.get_color()) for x in lines}) == len(lines) == len(s.trials)
    assert [x.get_linestyle() == '--' for x in lines] == [t.number in pruned for t in s.trials]
    plt.close('all')
    one = search_figures(toy_curve_study(1))                                # too few trials for importances or slices
    assert list(one) == ['history', 'curves'] and one['curves'].axes[0].get_legend() is not None
    plt.close('all')


def test_search_png_is_made_of_the_figures(tmp_path):
    "save_search (called by tune) writes the figures with save_search_figures: each panel, and all on search.png."
    paths = save_search_figures(toy_curve_study(12), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['search.png', 'search_curves.png', 'search_history.png',
                                                           'search_importances.png', 'search_parallel.png',
                                                           'search_params.png']
    assert paths['plot'] == tmp_path / 'search.png'
    page, panel = plt.imread(paths['plot']), plt.imread(paths['history'])
    assert page.shape[0] > 2 * panel.shape[0] and page.shape[1] > panel.shape[1]
    assert save_search_figures(optuna.create_study(), tmp_path / 'e') == dict(plot=tmp_path / 'e' / 'search.png')
    assert (tmp_path / 'e' / 'search.png').exists()                       # no trial reported yet: a page all the same


def test_curve_colors_stay_distinct_past_twenty():
    for n in (1, 10, 12, 20, 35):
        assert len(set(curve_colors(n))) == n


def test_search_page_shows_trials_figures_and_files(tmp_path):
    s = toy_curve_study(12)
    paths = save_search_figures(s, tmp_path)
    trials_table(s).to_csv(tmp_path / 'trials.csv')
    text = write_search_page(s, tmp_path, trials_table(s), paths).read_text()
    figs = [k for k in paths if k != 'plot']
    assert text.count('<img') == len(figs) and all(f'src="search_{k}.png"' in text for k in figs)
    assert text.count('<tr>') == 1 + len(s.trials) and 'class="mc sortable heat"' in text   # a row per trial, scores coloured
    assert f'tensorboard --logdir {tmp_path}' in text and 'href="trials.csv"' in text
    assert 'Best:' not in text                       # no best_config.yaml was written: no best config to show


# -- noise

def test_bootstrap_f1():
    y = np.repeat(np.arange(18), 4); groups = np.arange(len(y)) // 2
    assert np.allclose(bootstrap_f1(y, y, groups, n=20), 1.0)
    rng = np.random.default_rng(0)
    pred = np.where(rng.random(len(y)) < .6, y, rng.integers(0, 18, len(y)))
    b = bootstrap_f1(y, np.eye(18)[pred], groups, n=50, seed=1)
    assert b.std() > 0.01 and np.array_equal(b, bootstrap_f1(y, pred, groups, n=50, seed=1))
