"""maskcls.synth end to end: layout, determinism across worker counts, overwrite protection, noise, and reading back."""
import io, re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.labels import MASK_STEMS, N_CLASSES, decode
from maskcls.synth import STEMS, make_dataset, person_photos, sample_people
from conftest import tree_digest

PEOPLE, EVAL = 6, 2


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "One small dataset with noise, written by one worker, shared by the read-only tests."
    root = tmp_path_factory.mktemp('synth')
    summary = make_dataset(root, people=PEOPLE, eval_people=EVAL, seed=7, noise=0.34, workers=1, progress=False)
    return root, summary


def test_summary_counts(data):
    root, s = data
    assert (s['people'], s['train_images'], s['eval_people'], s['eval_images']) == (PEOPLE, PEOPLE * 7, EVAL, EVAL * 7)
    assert sum(s['extensions'].values()) == PEOPLE * 7 and s['extensions']['png'] >= 1 and s['extensions']['jpeg'] >= 1
    assert s['noisy_people'] == 2 and s['noisy_images'] == 7 + 2     # one gender flip (7 images), one swap (2)
    assert s['seconds'] > 0 and s['workers'] == 1


def test_train_layout(data):
    root, s = data
    tr = pd.read_csv(root / 'train' / 'train.csv', dtype={'id': str})
    assert tr.columns.tolist() == ['id', 'gender', 'race', 'age', 'path']
    assert len(tr) == PEOPLE and tr.path.is_unique and tr.id.duplicated().sum() == 1      # one id shared by two people
    assert tr.id.str.fullmatch(r'\d{6}(-1)?').all() and tr.id.str.contains('-').any()    # zero-padded, one non-numeric
    assert set(tr.race) == {'Asian'} and tr.age.between(18, 60).all() and set(tr.gender) <= {'male', 'female'}
    assert (tr.path == tr.id + '_' + tr.gender + '_Asian_' + tr.age.astype(str)).all()
    images = root / 'train' / 'images'
    entries = sorted(p.name for p in images.iterdir())
    assert sorted(e for e in entries if not e.startswith('.')) == sorted(tr.path)
    junk = [p for p in images.rglob('*') if p.name.startswith('._') or p.name == '.DS_Store']
    assert (images / '.DS_Store').is_file() and any(p.parent == images and p.name.startswith('._') for p in junk)
    assert any(p.parent != images for p in junk)                 # junk inside a person folder too
    assert len(junk) == s['junk_files']
    exts = set()
    for person in tr.path:
        files = [f for f in (images / person).iterdir() if not f.name.startswith('.')]
        assert sorted(f.stem for f in files) == sorted(STEMS)
        for f in files:
            exts.add(f.suffix)
            with Image.open(f) as im:
                assert (im.size, im.mode) == ((384, 512), 'RGB')
                assert im.format == {'.jpg': 'JPEG', '.jpeg': 'JPEG', '.png': 'PNG'}[f.suffix]
    assert exts == {'.jpg', '.jpeg', '.png'}


def test_eval_layout(data):
    root, _ = data
    info, gt = pd.read_csv(root / 'eval' / 'info.csv'), pd.read_csv(root / 'eval' / 'gt.csv')
    assert info.columns.tolist() == gt.columns.tolist() == ['ImageID', 'ans']
    assert len(info) == EVAL * 7 and set(info.ans) == {0} and info.ImageID.tolist() == gt.ImageID.tolist()
    assert info.ImageID.str.fullmatch(r'[0-9a-f]{40}\.jpg').all() and info.ImageID.is_unique
    assert sorted(info.ImageID) == sorted(p.name for p in (root / 'eval' / 'images').iterdir())
    assert gt.ans.between(0, N_CLASSES - 1).all()
    mask = decode(gt.ans.values)[0]
    assert np.bincount(mask, minlength=3).tolist() == [5 * EVAL, EVAL, EVAL]   # 5 worn, 1 incorrect, 1 none per person
    with Image.open(root / 'eval' / 'images' / info.ImageID[0]) as im:
        assert (im.size, im.mode, im.format) == ((384, 512), 'RGB', 'JPEG')


def test_same_bytes_any_workers_and_seed_changes_them(data, tmp_path):
    root, _ = data
    two = tmp_path / 'two'
    make_dataset(two, people=PEOPLE, eval_people=EVAL, seed=7, noise=0.34, workers=2, progress=False)
    a, b = tree_digest(root), tree_digest(two)
    assert len(a) > PEOPLE * 7 and a == b
    other = tmp_path / 'other'
    make_dataset(other, people=PEOPLE, eval_people=EVAL, seed=8, noise=0.34, workers=1, progress=False)
    c = tree_digest(other)
    assert c['train/train.csv'] != a['train/train.csv']
    def images(d): return {v for k, v in d.items() if k.endswith(('.jpg', '.jpeg', '.png'))
                           and not Path(k).name.startswith('._')}
    assert len(images(a)) == (PEOPLE + EVAL) * 7 and not images(a) & images(c)   # no image in common


def test_noise_lists_what_was_corrupted(data):
    root, _ = data
    noise = pd.read_csv(root / 'train' / 'noise.csv')
    assert noise.columns.tolist() == ['person', 'stem', 'kind', 'written', 'true', 'label', 'true_label']
    assert (noise.label != noise.true_label).all()
    tr = pd.read_csv(root / 'train' / 'train.csv', dtype={'id': str})
    truth = sample_people(PEOPLE, seed=7)
    flip = noise[noise.kind == 'gender']
    assert flip.person.nunique() == 1 and len(flip) == 7
    person = flip.person.iloc[0]
    row = tr[tr.path == person].iloc[0]
    true = truth[(truth.id == row.id) & (truth.age == row.age)].iloc[0]
    assert row.gender == flip.written.iloc[0] != true.gender == flip.true.iloc[0]
    assert (root / 'train' / 'images' / person).is_dir()


def test_swapped_files_hold_the_other_photo(data):
    """The images are drawn from the truth; only the names lie: `normal.*` of a swapped person is the incorrect-mask
    photo."""
    root, _ = data
    noise = pd.read_csv(root / 'train' / 'noise.csv')
    person = noise.loc[noise.kind == 'mask', 'person'].iloc[0]
    truth = sample_people(PEOPLE, seed=7)
    i = int(np.flatnonzero(truth.path == person)[0])
    rng = np.random.default_rng([7, 0, i])                        # the person's own generator, as the writer seeds it
    drawn = {}
    for stem, img in person_photos(rng, truth.iloc[i]):
        drawn[stem] = (img, int(rng.integers(70, 97)))            # the writer draws a JPEG quality after each photo
    folder = root / 'train' / 'images' / person
    for written, shown, pos in (('normal', 'incorrect_mask', 6), ('incorrect_mask', 'normal', 5)):
        f = next(folder.glob(f'{written}.*'))
        img, q = drawn[shown]
        buf = io.BytesIO()
        img.save(buf, 'PNG', compress_level=1) if f.suffix == '.png' else img.save(buf, 'JPEG', quality=q)
        assert f.read_bytes() == buf.getvalue()


def test_refuses_to_overwrite(tmp_path):
    make_dataset(tmp_path, people=2, eval_people=1, seed=0, workers=1, progress=False)
    before = tree_digest(tmp_path)
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / 'train')) + '.*overwrite=True'):
        make_dataset(tmp_path, people=2, eval_people=1, seed=1, workers=1, progress=False)
    assert tree_digest(tmp_path) == before                             # nothing touched
    stale = tmp_path / 'train' / 'images' / '999999_male_Asian_30'
    stale.mkdir()
    make_dataset(tmp_path, people=2, eval_people=1, seed=1, workers=1, overwrite=True, progress=False)
    assert not stale.exists() and tree_digest(tmp_path) != before     # replaced, stale folder gone


def test_refuses_a_full_eval_folder_and_accepts_empty_ones(tmp_path):
    (tmp_path / 'eval').mkdir()
    (tmp_path / 'eval' / 'info.csv').write_text('ImageID,ans\n')
    with pytest.raises(FileExistsError, match='eval'):
        make_dataset(tmp_path, people=1, eval_people=1, workers=1, progress=False)
    assert not (tmp_path / 'train').exists()                      # refused before writing anything
    s = make_dataset(tmp_path, people=1, eval_people=0, workers=1, progress=False)   # no eval: eval/ is left alone
    assert s['eval_images'] == 0 and (tmp_path / 'eval' / 'info.csv').read_text() == 'ImageID,ans\n'
    (tmp_path / 'empty' / 'train').mkdir(parents=True)
    assert make_dataset(tmp_path / 'empty', people=1, eval_people=0, workers=1, progress=False)['train_images'] == 7


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='people'): make_dataset(tmp_path, people=0, progress=False)
    with pytest.raises(ValueError, match='noise'): make_dataset(tmp_path, people=1, noise=1.5, progress=False)
    assert not any(tmp_path.iterdir())


def test_distributions_match_the_competition():
    df = sample_people(2700, seed=1)
    assert abs((df.gender == 'female').mean() - 0.61) < 0.005
    assert abs((df.age < 30).mean() - 0.474) < 0.01 and abs((df.age == 60).mean() - 0.071) < 0.005
    assert abs(df.age.between(58, 59).mean() - 0.09) < 0.01 and df.age.between(18, 25).mean() > 0.35
    assert df.id.str.contains('-').sum() == 40 and df.path.is_unique


def test_reads_back_with_layout(data):
    layout = pytest.importorskip('maskcls.layout')
    root, s = data
    df = layout.read_train(root, check_pixels=True, progress=False)
    assert len(df) == PEOPLE * 7 and df.person.nunique() == PEOPLE
    assert df.attrs['report']['skipped_junk'] == s['junk_files']   # junk counted, not read
    assert df.groupby('person').size().eq(7).all()
    assert sorted(df.stem.unique()) == sorted(MASK_STEMS)
    ev = layout.read_eval(root / 'eval')
    gt = pd.read_csv(root / 'eval' / 'gt.csv')
    assert len(ev) == EVAL * 7 and ev.label.tolist() == gt.ans.tolist()
