"""Run folders as people look at them: TensorBoard's run list and tag groups, the index of a CV folder, and
`maskcls runs`, which reads run folders and never changes them (issue 13)."""

import pandas as pd
import pytest

from maskcls.runs import read_events, tb_runs
from conftest import link_synth12, run, tree_digest

TINY = ['--img-size', '32', '24', '--batch-size', '16', '--epochs', '1', '--model', 'tiny']

pytestmark = pytest.mark.slow    # a CV and a training run


@pytest.fixture(scope='module')
def runs(tmp_path_factory, synth12):
    d = link_synth12(tmp_path_factory.mktemp('pages'), synth12)
    common = ['--data', d / 'data', '--cache-dir', d / 'cache', *TINY]
    run('cv', *common, '--folds', 2, '--out', d / 'runs' / 'cv', cwd=d)
    run('train', *common, '--lr', '0.01', '--out', d / 'runs' / 'train', cwd=d)
    return d


def test_cv_shows_one_run_per_fold_and_one_hparams_row(runs):
    cv = runs / 'runs' / 'cv'
    assert tb_runs(cv) == {'fold0/tb': False, 'fold1/tb': False, 'oof': True}     # no hparams sub-runs
    assert tb_runs(runs / 'runs' / 'train') == {'tb': True}
    oof = read_events(cv, 'oof')['scalars']
    assert {'valid/best_f1', 'valid/oof_acc', 'valid/oof_f1_mask', 'valid/oof_f1_gender', 'valid/oof_f1_age'} <= set(oof)
    assert oof['valid/best_f1']['value'].iloc[0] == pytest.approx(pd.read_json(cv / 'oof_metrics.json',
                                                                              typ='series')['f1'], abs=1e-6)


def test_tags_are_in_the_groups_tensorboard_opens(runs):
    for d in (runs / 'runs' / 'cv' / 'fold0', runs / 'runs' / 'train'):
        ev = read_events(d)
        groups = {t.split('/')[0] for t in [*ev['scalars'], *ev['images']]}
        assert groups == {'train', 'valid'}, (d, sorted(ev['scalars']), sorted(ev['images']))
        assert {'train/loss', 'train/lr', 'train/seconds', 'valid/f1', 'valid/confusion'} <= {*ev['scalars'],
                                                                                            *ev['images']}


def test_cv_folder_index_lists_its_files(runs):
    page = (runs / 'runs' / 'cv' / 'index.html').read_text()
    for f in ('fold0/metrics.csv', 'fold1/best.pt', 'oof_confusion.png', 'oof_metrics.json', 'folds.csv'):
        assert f'href="{f}"' in page, f
    assert 'tensorboard --logdir' in page and 'Out-of-fold scores' in page


def test_runs_command_reads_and_never_writes(runs):
    before = tree_digest(runs / 'runs', mtimes=True)
    listing = sorted(p.name for p in runs.iterdir())
    r = run('runs', cwd=runs)                                    # default: runs/, print only
    assert sorted(p.name for p in runs.iterdir()) == listing
    lines = r.stdout.splitlines()
    assert 'macro F1' in lines[0] and 'lr' in lines[0].split() and 'folds' in lines[0].split()
    assert sum('runs/cv ' in x for x in lines) == 1 and sum('runs/train ' in x for x in lines) == 1
    run('runs', runs / 'runs', '--out', runs / 'report', cwd=runs)
    assert tree_digest(runs / 'runs', mtimes=True) == before                   # same files, same bytes, same times
    t = pd.read_csv(runs / 'report' / 'runs.csv')
    assert sorted(t['kind']) == ['cv', 'run'] and t['f1'].between(0, 1).all()
    assert sorted(t.loc[t.kind == 'cv', 'folds_done']) == [2]
    page = (runs / 'report' / 'index.html').read_text()
    assert 'href="../runs/cv/index.html"' in page and '2 experiments: 1 run, 1 cross validation' in page
