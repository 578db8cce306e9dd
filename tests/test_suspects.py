"""`maskcls suspects` end to end on a tiny noisy synthetic set: ranking, page, corrected copy, bad input."""
import json, re, shutil

import pandas as pd
import pytest

from maskcls.cli import main
from maskcls.labels import PROB_COLS
from maskcls.layout import read_train
from maskcls.synth import make_dataset
from conftest import file_digest

pytestmark = pytest.mark.slow    # a CV run on noisy data

TINY = ['--folds', '2', '--epochs', '1', '--img-size', '32', '24', '--batch-size', '16', '--no-tensorboard',
        '--device', 'cpu', '--top-k', '1']


@pytest.fixture(scope='module')
def cv(tmp_path_factory):
    "A noisy 10-person dataset and a 2-fold, 1-epoch CV folder on it."
    d = tmp_path_factory.mktemp('suspects')
    make_dataset(d / 'data', people=10, eval_people=2, seed=3, noise=0.3, workers=1, progress=False)
    assert main(['cv', '--data', str(d / 'data'), '--out', str(d / 'cv'), '--cache-dir', str(d / 'cache'), *TINY]) == 0
    assert (d / 'cv' / 'oof.csv').exists()
    return d


def test_ranks_people_writes_page_and_a_corrected_copy(cv, capsys):
    csv = cv / 'data' / 'train' / 'train.csv'
    before = file_digest(csv)
    out, fixed = cv / 'out', cv / 'fixed'
    assert main(['suspects', '--cv', str(cv / 'cv'), '--out', str(out), '--top', '3', '--write-fixed', str(fixed),
                 '--fix', 'mask_swap,gender', '--min-score', '0']) == 0
    said = capsys.readouterr().out
    assert '10 people ranked' in said and 'maskcls cv --data' in said
    s = pd.read_csv(out / 'suspects.csv', dtype={'person': str})
    people = sorted(p.name for p in (cv / 'data' / 'train' / 'images').iterdir() if not p.name.startswith('.'))
    assert sorted(s['person']) == people                                   # every person once, by folder name
    assert s['rank'].tolist() == list(range(1, 11))
    assert s['score'].is_monotonic_decreasing
    assert {'person', 'attribute', 'given', 'predicted', 'score', 'confidence'} <= set(s.columns)
    page = (out / 'index.html').read_text()
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert all((out / i).exists() for i in imgs) and 'suspects.png' in imgs   # every picture beside the page
    assert len([i for i in imgs if i.startswith('thumbs/')]) == 3 * 7          # the top 3 people's photos
    assert all(not i.startswith('/') for i in imgs)
    # the corrected copy: the original untouched, the copy a valid data folder with the listed fixes applied
    assert file_digest(csv) == before
    fixes = pd.read_csv(fixed / 'train' / 'fixes.csv', dtype={'person': str})
    assert len(fixes) > 0
    orig, new = read_train(cv / 'data', progress=False), read_train(fixed, progress=False)
    assert len(new) == len(orig)
    assert list(pd.read_csv(fixed / 'train' / 'train.csv').columns) == ['id', 'gender', 'race', 'age', 'path']
    for f in fixes.itertuples():
        if f.attribute == 'gender':
            assert f.new_person != f.person and (fixed / 'train' / 'images' / f.new_person).is_dir()
            assert orig.loc[orig.person == f.person, 'gender'].iloc[0] != new.loc[new.person == f.new_person,
                                                                                 'gender'].iloc[0]
        else:                                           # the normal photo of the copy is the original incorrect one
            link = next((fixed / 'train' / 'images' / f.new_person).glob('normal.*'))
            assert link.resolve().stem == 'incorrect_mask'
    # and it trains: the documented next step
    assert main(['cv', '--data', str(fixed), '--out', str(cv / 'cv_fixed'), '--cache-dir', str(cv / 'cache'),
                 *TINY]) == 0
    assert len(pd.read_csv(cv / 'cv_fixed' / 'oof.csv')) == len(orig)


def test_write_fixed_refuses_to_overwrite(cv, capsys):
    taken = cv / 'taken'
    taken.mkdir()
    (taken / 'keep.txt').write_text('mine')
    before = file_digest(cv / 'data' / 'train' / 'train.csv')
    assert main(['suspects', '--cv', str(cv / 'cv'), '--out', str(cv / 'out_refused'), '--write-fixed', str(taken)]) == 2
    assert 'already exists' in capsys.readouterr().err
    assert (taken / 'keep.txt').read_text() == 'mine' and len(list(taken.iterdir())) == 1
    assert not (cv / 'out_refused').exists()                                # refused before any work
    assert file_digest(cv / 'data' / 'train' / 'train.csv') == before


def test_baseline_ranks_on_gender_and_mask_only(cv):
    assert main(['suspects', '--cv', str(cv / 'cv'), '--out', str(cv / 'base'), '--baseline', '--top', '1']) == 0
    s = pd.read_csv(cv / 'base' / 'suspects.csv')
    assert set(s['attribute']) <= {'mask', 'gender'} and s['score'].is_monotonic_decreasing


def bad_cv(cv, name, edit=None, task=None):
    "A copy of the CV folder's oof.csv and task.json, the oof table passed through `edit`."
    d = cv / name
    d.mkdir()
    shutil.copy(cv / 'cv' / 'task.json', d / 'task.json')
    if task: (d / 'task.json').write_text(json.dumps(task))
    if edit: edit(pd.read_csv(cv / 'cv' / 'oof.csv', dtype={'person': str})).to_csv(d / 'oof.csv', index=False)
    return d


@pytest.mark.parametrize('name,edit,task,says', [
    ('missing', None, None, 'not found'),
    ('no_oof', None, None, 'oof.csv not found'),
    ('no_person', lambda o: o.drop(columns='person'), None, "lacks column(s) ['person']"),
    ('own_person', lambda o: o.assign(person=o['path']), None, 'its own person'),
])
def test_bad_cv_folders_are_refused_with_the_fix(cv, capsys, name, edit, task, says):
    d = cv / name if name == 'missing' else bad_cv(cv, name, edit, task)
    assert main(['suspects', '--cv', str(d), '--out', str(cv / f'out_{name}')]) == 2
    err = capsys.readouterr().err
    assert says in err and str(d) in err


def test_missing_photos_are_named(cv, capsys):
    "An oof.csv whose photos are gone (moved data, or relative paths from another folder): the error names one."
    d = bad_cv(cv, 'moved', lambda o: o.assign(path=o['path'].str.replace(str(cv / 'data'), str(cv / 'gone'))))
    assert main(['suspects', '--cv', str(d), '--out', str(cv / 'out_moved')]) == 2
    err = capsys.readouterr().err
    assert 'missing' in err and str(cv / 'gone') in err


def test_plain_classes_are_ranked_by_image(cv, capsys):
    "A CV of plain classes (an ImageFolder task) is no longer refused: its images are ranked, by the task's names."
    d = bad_cv(cv, 'plain_classes', lambda o: o[['path', 'person', 'label', 'fold'] + PROB_COLS[:3]].assign(label=0),
               dict(name='folders', classes=['a', 'b', 'c']))
    assert main(['suspects', '--cv', str(d), '--out', str(cv / 'out_plain')]) == 0
    assert f"{len(pd.read_csv(d / 'oof.csv'))} images ranked" in capsys.readouterr().out
    assert set(pd.read_csv(cv / 'out_plain' / 'suspects.csv')['given']) == {'a'}
