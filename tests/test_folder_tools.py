"""The review tools on any ImageFolder tree, through `maskcls.cli.main`: `suspects` (page, CSV, corrected copy,
groups), with the tree's own class names throughout; bad input answered in one line."""
import json, shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.cli import main
from maskcls.layout import read_data
from conftest import SHAPES, tree_digest, write_shapes

TINY = ['--model', 'tiny', '--img-size', '32', '32', '--batch-size', '16', '--no-tensorboard', '--top-k', '1',
        '--device', 'cpu', '--workers', '0']
MOVED = {'circle/circle_000.png': 'square', 'triangle/triangle_001.png': 'cross'}   # planted label errors


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A 4-class tree of 12 images each with two images in a wrong class folder, and a 2-fold CV of the tiny CNN."
    d = tmp_path_factory.mktemp('folder')
    torch.set_num_threads(1)
    write_shapes(d / 'shapes', 12, seed=0)
    for rel, to in MOVED.items(): (d / 'shapes' / rel).rename(d / 'shapes' / to / rel.split('/')[1])
    assert main(['cv', '--data', str(d / 'shapes'), '--folds', '2', '--epochs', '3', '--out', str(d / 'cv'),
                 '--cache-dir', str(d / 'cache'), *TINY]) == 0
    return d


def test_suspects_ranks_images_with_the_trees_class_names(work, capsys):
    d = work
    capsys.readouterr()
    assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(d / 'sus'), '--top', '5']) == 0
    out = capsys.readouterr().out
    assert '48 images ranked' in out and 'flagged by confident learning' in out and 'index.html' in out, out
    s = pd.read_csv(d / 'sus' / 'suspects.csv')
    assert len(s) == 48 and s['rank'].tolist() == list(range(1, 49)) and s['score'].is_monotonic_decreasing
    assert set(s['given']) == set(SHAPES) and set(s['predicted']) <= set(SHAPES)
    page = (d / 'sus' / 'index.html').read_text()
    assert 'Label suspects' in page and 'circle' in page and 'gender' not in page.lower()
    assert len(list((d / 'sus' / 'thumbs').glob('*.jpg'))) == 5
    u = pd.read_csv(d / 'sus' / 'units.csv')
    assert len(u) == 48 and u['issue'].sum() == (s['issues'] > 0).sum()


def test_suspects_groups_by_a_column_or_a_file(work, capsys, tmp_path):
    d = work
    assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 'g'), '--group', 'fold']) == 0
    assert '2 groups ranked' in capsys.readouterr().out
    df, _ = read_data(d / 'shapes')
    groups = df.assign(group=df['class_name'])[['path', 'group']]
    groups.to_csv(tmp_path / 'groups.csv', index=False)
    assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 'g2'), '--group',
                 str(tmp_path / 'groups.csv')]) == 0
    s = pd.read_csv(tmp_path / 'g2' / 'suspects.csv')
    assert sorted(s['group']) == SHAPES and s['images'].sum() == 48
    for bad, says in (('nope', 'neither a column of'), (str(tmp_path / 'groups.csv'), 'have no group')):
        if bad != 'nope': groups.iloc[1:].to_csv(tmp_path / 'groups.csv', index=False)
        assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 'g3'), '--group', bad]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


def test_write_fixed_moves_flagged_images_and_never_touches_the_original(work, capsys, tmp_path):
    d = work
    before = tree_digest(d / 'shapes')
    assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 's'), '--write-fixed',
                 str(tmp_path / 'fixed'), '--min-score', '0']) == 0
    out = capsys.readouterr().out
    assert 'corrected copy of' in out and 'maskcls cv --data' in out, out
    assert tree_digest(d / 'shapes') == before                       # the original is only read
    fixes = pd.read_csv(tmp_path / 's' / 'fixes.csv')
    units = pd.read_csv(tmp_path / 's' / 'units.csv')
    assert len(fixes) == units['issue'].sum()
    fixed, task = read_data(tmp_path / 'fixed')
    assert len(fixed) == 48 and list(task.classes) == SHAPES
    for r in fixes.itertuples():                                     # each flagged image in its suspected class
        assert (tmp_path / 'fixed').joinpath(r.copy.split('fixed/', 1)[1]).parent.name == r.fixed
    # refused in one line, before any work: an existing non-empty folder, a folder inside the data
    for target, says in ((tmp_path / 'fixed', 'not empty'), (d / 'shapes' / 'fixed', 'inside the data folder')):
        assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 'r'), '--write-fixed',
                     str(target)]) == 2
        err = capsys.readouterr().err
        assert says in err and str(target) in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / 'r').exists()
    assert tree_digest(d / 'shapes') == before


def test_suspects_group_is_refused_for_the_competition(work, capsys, tmp_path):
    "A folder of copies of the CV with the competition's task recorded: --group names the fix."
    d = work
    c = tmp_path / 'comp'
    shutil.copytree(d / 'cv', c)
    (c / 'task.json').unlink()                     # no task.json: the competition's (older runs)
    assert main(['suspects', '--cv', str(c), '--out', str(tmp_path / 'o'), '--group', 'fold']) == 2
    assert 'groups by person' in capsys.readouterr().err


def test_planted_errors_rank_high(work, capsys, tmp_path):
    "The two images moved into a wrong class folder are among the top few suspects, their true class suspected."
    d = work
    assert main(['suspects', '--cv', str(d / 'cv'), '--out', str(tmp_path / 's')]) == 0
    s = pd.read_csv(tmp_path / 's' / 'suspects.csv')
    for rel, to in MOVED.items():
        row = s[s['photo'].str.endswith(rel.split('/')[1])].iloc[0]
        assert row['given'] == to and row['rank'] <= 6, row
        assert row['predicted'] == rel.split('/')[0] and row['issue'], row


def test_ensemble_info_takes_the_tasks_classes(tmp_path, capsys):
    "Twenty classes: prediction files vote into a submission; submissions vote with --task; 20 is refused, named."
    rng = np.random.default_rng(0)
    ids = [f'im{i}.png' for i in range(6)]
    pd.DataFrame(dict(ImageID=ids, ans=0)).to_csv(tmp_path / 'info.csv', index=False)
    for k in range(2):
        p = pd.DataFrame(rng.dirichlet(np.ones(20), 6), columns=[f'p{c}' for c in range(20)])
        p.insert(0, 'ImageID', ids); p.to_csv(tmp_path / f'm{k}.csv', index=False)
    assert main(['ensemble', str(tmp_path / 'm0.csv'), str(tmp_path / 'm1.csv'), '--info', str(tmp_path / 'info.csv'),
                 '--out', str(tmp_path / 'e.csv')]) == 0
    sub = pd.read_csv(tmp_path / 'e_submission.csv')
    assert len(sub) == 6 and sub['ans'].between(0, 19).all()
    task = tmp_path / 'run'; task.mkdir()
    (task / 'task.json').write_text(json.dumps(dict(name='t20', classes=[f'c{c}' for c in range(20)], attributes=[])))
    for k in range(2): pd.DataFrame(dict(ImageID=ids, ans=[19, 18, 3, 4, 5, 6])).to_csv(tmp_path / f's{k}.csv',
                                                                                        index=False)
    assert main(['ensemble', str(tmp_path / 's0.csv'), str(tmp_path / 's1.csv'), '--method', 'hard', '--info',
                 str(tmp_path / 'info.csv'), '--task', str(task), '--out', str(tmp_path / 'h.csv')]) == 0
    assert pd.read_csv(tmp_path / 'h.csv')['ans'].tolist() == [19, 18, 3, 4, 5, 6]
    capsys.readouterr()
    pd.DataFrame(dict(ImageID=ids, ans=[20, 1, 3, 4, 5, 6])).to_csv(tmp_path / 's1.csv', index=False)
    assert main(['ensemble', str(tmp_path / 's0.csv'), str(tmp_path / 's1.csv'), '--method', 'hard', '--task',
                 str(task), '--out', str(tmp_path / 'h2.csv')]) == 2
    err = capsys.readouterr().err
    assert 's1.csv line 2' in err and 'outside 0..19' in err and len(err.strip().splitlines()) == 1, err


def test_pseudo_per_class_thresholds_and_cv_reads_the_table(work, capsys, tmp_path):
    d = work
    write_shapes(tmp_path / 'unlabelled', 4, seed=1)
    capsys.readouterr()
    assert main(['pseudo', '--run', str(d / 'cv'), '--data', str(tmp_path / 'unlabelled'), '--out', str(tmp_path / 'ps'),
                 '--device', 'cpu', '--threshold', 'circle=0.99,0.3']) == 0
    out = capsys.readouterr().out
    assert 'of 16 images' in out and 'circle 0.99, cross 0.3' in out and 'kept per class: circle' in out, out
    every = pd.read_csv(tmp_path / 'ps' / 'all.csv')
    want = every['confidence'] >= np.where(every['class_name'] == 'circle', .99, .3)
    assert (every['keep'] == want).all() and set(every['class_name']) <= set(SHAPES)
    kept = pd.read_csv(tmp_path / 'ps' / 'pseudo.csv')
    assert list(kept.columns[:3]) == ['path', 'label', 'person'] and 'answer' not in kept.columns
    assert len(kept) == want.sum() > 0 and kept['label'].between(0, 3).all()
    assert json.loads((tmp_path / 'ps' / 'pseudo.json').read_text())['thresholds']['circle'] == .99
    assert main(['cv', '--data', str(d / 'shapes'), '--folds', '2', '--epochs', '1', '--out', str(tmp_path / 'cvp'),
                 '--cache-dir', str(d / 'cache'), '--pseudo', str(tmp_path / 'ps' / 'pseudo.csv'), *TINY]) == 0
    assert pd.read_csv(tmp_path / 'cvp' / 'oof.csv').shape[0] == 48     # pseudo rows train, never validate
    for bad, says in (('cow=0.9', "unknown class(es) ['cow']"), ('circle=2', 'threshold of circle')):
        assert main(['pseudo', '--run', str(d / 'cv'), '--data', str(tmp_path / 'unlabelled'), '--out',
                     str(tmp_path / 'bad'), '--device', 'cpu', '--threshold', bad]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err


def test_pseudo_halves_measures_on_the_unseen_half(work, tmp_path):
    "The half-A/half-B measurement on a tree: three arms, scored on half B; all of A is what the last arm adds."
    from maskcls.config import Config
    from maskcls.jobs import pseudo_halves
    d = work
    write_shapes(tmp_path / 'pool', 4, seed=2)
    cfg = Config(data=str(d / 'shapes'), img_size=(32, 32), epochs=1, batch_size=16, cache_dir=str(d / 'cache'),
                 tensorboard=False, top_k=1, device='cpu', workers=0)
    t = pseudo_halves(cfg, tmp_path / 'pool', thresholds=0.3, work=tmp_path / 'w')
    assert t['arm'].tolist() == ['baseline', '+ pseudo(A), thresholds', '+ pseudo(A), all images']
    assert t['pseudo_images'].tolist()[2] == 8 and t['f1_gain'].iloc[0] == 0 and t['f1'].between(0, 1).all()


def test_eda_of_an_image_folder(work, capsys, tmp_path):
    d = work
    capsys.readouterr()
    assert main(['eda', '--data', str(d / 'shapes'), '--out', str(tmp_path / 'eda')]) == 0
    assert '48 images of 4 classes' in capsys.readouterr().out
    cc = pd.read_csv(tmp_path / 'eda' / 'class_counts.csv')
    assert cc['class'].tolist() == SHAPES and cc['images'].tolist() == [11, 13, 13, 11]   # two images moved
    assert pd.read_csv(tmp_path / 'eda' / 'image_sizes.csv')[['width', 'height']].values.tolist() == [[40, 40]]
    page = (tmp_path / 'eda' / 'index.html').read_text()
    assert 'class_grid.png' in page and 'triangle' in page and 'gender' not in page


def test_compare_two_prediction_files_of_a_folder(work, capsys, tmp_path):
    "Two prediction files of the tree: the disagreements with photos and both classes by name; the truth from folders."
    d = work
    df, task = read_data(d / 'shapes')
    ids = [str(Path(p).relative_to(d / 'shapes').as_posix()) for p in df['path']]
    pa = np.eye(4)[df['label'].to_numpy()] * .6 + .1
    pb = pa.copy(); pb[:5] = pb[:5, [3, 0, 1, 2]]                      # B moves the first five to another class
    for name, p in (('a.csv', pa), ('b.csv', pb)):
        t = pd.DataFrame(p, columns=task.prob_cols); t.insert(0, 'ImageID', ids); t.to_csv(tmp_path / name, index=False)
    capsys.readouterr()
    assert main(['compare', str(tmp_path / 'a.csv'), str(tmp_path / 'b.csv'), '--data', str(d / 'shapes'), '--out',
                 str(tmp_path / 'cmp')]) == 0
    assert 'index.html' in capsys.readouterr().out
    dis = pd.read_csv(tmp_path / 'cmp' / 'disagreements.csv')
    assert len(dis) == 5 and set(dis['a_class']) <= set(SHAPES) and set(dis['right']) == {'a'}
    s = json.loads((tmp_path / 'cmp' / 'summary.json').read_text())
    assert s['disagree'] == 5 and s['a_right'] == 5 and s['f1_a'] == 1.0
    assert (tmp_path / 'cmp' / 'disagreements.png').stat().st_size > 0
    page = (tmp_path / 'cmp' / 'index.html').read_text()
    assert 'triangle' in page and 'gender' not in page
    # --task names the classes of a plain folder of images; user errors in one line
    flat = tmp_path / 'flat'; flat.mkdir()
    assert main(['compare', str(tmp_path / 'a.csv'), str(tmp_path / 'b.csv'), '--data', str(d / 'shapes'), '--task',
                 str(d / 'cv'), '--out', str(tmp_path / 'cmp2')]) == 0
    for args, says in ((['--data', str(flat)], 'no class folders'), ([], 'give --eval'),
                       (['--data', str(tmp_path / 'nowhere')], 'not a folder')):
        assert main(['compare', str(tmp_path / 'a.csv'), str(tmp_path / 'b.csv'), *args, '--out',
                     str(tmp_path / 'x')]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
