"""Bad input for maskcls.layout: every case gets an error naming the file and what was expected."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from maskcls.labels import MASK_TASK
from maskcls.layout import (LayoutError, check_image, fix_known_errors, for_task, read_data, read_eval, read_image_folder,
                            read_train, write_tiny_train)


@pytest.fixture
def train(tmp_path):
    return write_tiny_train(tmp_path)


def person(train, name='000001_female_Asian_45'):
    return train / 'images' / name


def problems(root, **kw):
    with pytest.raises(LayoutError) as e: read_train(root, progress=False, **kw)
    return e.value.problems, str(e.value)


def one_problem(root, **kw):
    ps, msg = problems(root, **kw)
    assert len(ps) == 1, msg
    return ps[0], msg


def test_valid_tree_reads(train):
    df = read_train(train, check_pixels=True, progress=False)
    assert len(df) == 21 and df['person'].nunique() == 3
    # ids stay strings, leading zeros kept
    assert pd.api.types.is_string_dtype(df['id']) and df['id'].iloc[0] == '000001'
    assert set(df.columns) >= {'path', 'person', 'id', 'gender', 'race', 'age', 'mask', 'label'}


def test_parent_folder_accepted(train):
    assert len(read_train(train.parent, progress=False)) == 21


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='no images folder'): read_train(tmp_path / 'nope')


def test_missing_file(train):
    (person(train) / 'mask3.jpg').unlink()
    p, msg = one_problem(train)
    assert p.path.endswith('000001_female_Asian_45') and 'missing mask3' in p.what


def test_two_files_same_stem(train):
    shutil.copy(person(train) / 'mask1.jpg', person(train) / 'mask1.jpeg')
    p, _ = one_problem(train)
    assert p.path.endswith('mask1.jpg') or p.path.endswith('mask1.jpeg')
    assert "two files with stem 'mask1'" in p.what


def test_unknown_stem_and_extension(train):
    (person(train) / 'mask6.jpg').write_bytes(b'x')
    (person(train) / 'mask1.gif').write_bytes(b'x')
    ps, msg = problems(train)
    assert sorted(Path(p.path).name for p in ps) == ['mask1.gif',
                                                     'mask6.jpg'] and all('unknown file' in p.what for p in ps)


def test_extension_case_is_ignored(train):
    f = person(train) / 'mask2.jpg'
    f.rename(f.with_name('mask2.JPG'))
    df = read_train(train, progress=False)
    assert (df['path'].str.endswith('mask2.JPG')).sum() == 1 and len(df) == 21


def test_junk_ignored_and_counted_but_nothing_else(train):
    (train / 'images' / '._000001_female_Asian_45').write_bytes(b'j')
    (train / 'images' / '.DS_Store').write_bytes(b'j')
    (person(train) / '._normal.jpg').write_bytes(b'j')
    (train / 'images' / '._junkdir').mkdir()
    assert read_train(train, progress=False).attrs['report']['skipped_junk'] == 4
    (person(train) / '.hidden.jpg').write_bytes(b'x')   # not macOS junk: reported, not skipped
    p, _ = one_problem(train)
    assert p.path.endswith('.hidden.jpg')


def test_unknown_file_in_images(train):
    (train / 'images' / 'notes.txt').write_text('hi')
    p, _ = one_problem(train)
    assert p.path.endswith('notes.txt') and 'person folders' in p.what


@pytest.mark.parametrize('name,expect',
                         [('000009_female_Asian', 'does not parse'), ('000009_female_Asian_45.5', 'does not parse'),
                                         ('000009_other_Asian_45', "'other'"), ('000009_female_Asian_99',
                                                                                'outside 18..60'),
                                         ('000009_female_Asian_3', 'outside 18..60')])
def test_bad_folder_names(train, name, expect):
    shutil.copytree(person(train), train / 'images' / name)
    ps, msg = problems(train)
    assert any(p.path.endswith(name) and expect in p.what for p in ps), msg


def test_csv_rows_and_folders_disagree(train):
    df = pd.read_csv(train / 'train.csv', dtype=str)
    df.loc[0, 'path'] = '000777_female_Asian_45'                 # row without folder; folder 000001 now without row
    df.loc[1, 'age'] = '24'                                      # disagrees with its folder
    df.to_csv(train / 'train.csv', index=False)
    ps, msg = problems(train)
    whats = ' | '.join(str(p) for p in ps)
    assert "'000777_female_Asian_45' has no folder" in whats and 'row 2' in whats
    assert "folder '000001_female_Asian_45' has no row" in whats
    assert 'row 3' in whats and 'disagree' in whats
    assert len(ps) == 3


def test_csv_float_age_is_reported(train):
    df = pd.read_csv(train / 'train.csv', dtype=str)
    df.loc[0, 'age'] = '45.0'
    df.to_csv(train / 'train.csv', index=False)
    p, _ = one_problem(train)
    assert 'row 2' in p.path and 'disagree' in p.what


def test_csv_wrong_columns(train):
    pd.read_csv(train / 'train.csv', dtype=str).rename(columns={'path': 'folder'}).to_csv(train / 'train.csv',
                                                                                          index=False)
    p, _ = one_problem(train)
    assert p.path.endswith('train.csv') and "missing column(s) ['path']" in p.what


def test_csv_duplicate_rows(train):
    df = pd.read_csv(train / 'train.csv', dtype=str)
    pd.concat([df, df.iloc[:1]]).to_csv(train / 'train.csv', index=False)
    p, _ = one_problem(train)
    assert 'more than once' in p.what


def test_duplicate_id_different_people_is_fine(train):
    shutil.copytree(person(train), train / 'images' / '000001_male_Asian_30')
    (train / 'train.csv').unlink()
    df = read_train(train, progress=False)
    assert df.groupby('id')['person'].nunique()['000001'] == 2


def test_unreadable_and_truncated_images(train):
    (person(train) / 'mask1.jpg').write_bytes(b'not an image at all')
    big = Image.effect_noise((384, 512), 50).convert('RGB')
    big.save(person(train) / 'mask2.jpg', quality=90)
    data = (person(train) / 'mask2.jpg').read_bytes()
    (person(train) / 'mask2.jpg').write_bytes(data[: len(data) // 2])
    (person(train) / 'mask4.jpg').write_bytes(b'')
    assert check_image(person(train) / 'mask3.jpg') is None
    ps, msg = problems(train, check_pixels=True)
    names = sorted(Path(p.path).name for p in ps)
    assert names == ['mask1.jpg', 'mask2.jpg', 'mask4.jpg'], msg
    assert all(('truncated' in p.what) or ('empty' in p.what) for p in ps)


def test_all_problems_reported_at_once(train):
    (person(train) / 'mask3.jpg').unlink()
    (person(train, '000002_male_Asian_23') / 'junk.png').write_bytes(b'x')
    shutil.copytree(person(train), train / 'images' / 'badname')
    ps, msg = problems(train)
    assert len(ps) == 3 and msg.startswith('3 problem(s)')
    assert {Path(p.path).name for p in ps} == {'000001_female_Asian_45', 'junk.png', 'badname'}


def test_label_fixes_only_when_asked(tmp_path):
    root = write_tiny_train(tmp_path,
                            people=(('006359', 'female', 25), ('000020', 'male', 40), ('000005', 'female', 33)))
    plain = read_train(root, progress=False)
    assert plain.attrs['report']['label_fixes'] == 0
    fixed = read_train(root, fix_labels=True, progress=False)
    ch = pd.DataFrame(fixed.attrs['fixes'])
    assert (ch['column'] == 'gender').sum() == 7 and (ch['column'] == 'mask').sum() == 2
    assert (fixed.loc[fixed.id == '006359', 'gender'] == 0).all()
    m = fixed.set_index('stem').loc[lambda d: d.id == '000020', 'mask']
    assert (m['normal'], m['incorrect_mask']) == (1, 2)
    assert (fixed['label'] != plain['label']).sum() == 9
    again, ch2 = fix_known_errors(fixed)   # already fixed: nothing more changes
    assert len(ch2[ch2.column == 'gender']) == 0


def write_eval(root, ids, listed=None, ext='.jpg'):
    ev = root / 'eval'
    (ev / 'images').mkdir(parents=True)
    for i in ids: Image.new('RGB', (8, 8)).save(ev / 'images' / f'{i}{ext}')
    pd.DataFrame(dict(ImageID=listed if listed is not None else [f'{i}{ext}' for i in ids],
                      ans=0)).to_csv(ev / 'info.csv', index=False)
    return ev


def test_eval_reads_in_info_order(tmp_path):
    ids = [f'{i:040x}' for i in (3, 1, 2)]
    ev = write_eval(tmp_path, ids)
    assert [Path(p).stem for p in read_eval(ev).path] == ids


def test_eval_ids_without_extension_match_by_stem(tmp_path):
    ids = [f'{i:040x}' for i in range(3)]
    write_eval(tmp_path, ids, listed=ids)
    assert len(read_eval(tmp_path)) == 3


@pytest.mark.parametrize('case,expect',
                         [('missing', 'has no file'), ('duplicate', 'more than once'), ('extra', 'not listed')])
def test_eval_bad_ids(tmp_path, case, expect):
    ids = [f'{i:040x}' for i in range(3)]
    listed = [f'{i}.jpg' for i in ids]
    if case == 'missing': listed.append('f' * 40 + '.jpg')
    if case == 'duplicate': listed.append(listed[0])
    if case == 'extra': listed = listed[:2]
    ev = write_eval(tmp_path, ids, listed=listed)
    with pytest.raises(LayoutError, match=expect): read_eval(ev)


def test_eval_missing_files_and_columns(tmp_path):
    with pytest.raises(FileNotFoundError, match='info.csv'): read_eval(tmp_path)
    ev = write_eval(tmp_path, ['a' * 40])
    pd.DataFrame(dict(image=['x'])).to_csv(ev / 'info.csv', index=False)
    with pytest.raises(LayoutError, match='missing column ImageID'): read_eval(ev)


def test_image_folder(tmp_path):
    for c in ('cat', 'dog'):
        (tmp_path / c).mkdir()
        for i in range(2): Image.new('RGB', (8, 8)).save(tmp_path / c / f'{i}.png')
    df = read_image_folder(tmp_path)
    assert df.label.tolist() == [0, 0, 1, 1] and 'mask' not in df.columns
    (tmp_path / 'empty').mkdir()
    with pytest.raises(LayoutError, match='holds no images'): read_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError): read_image_folder(tmp_path / 'nope')


def test_image_folder_table_needs_its_own_task(tmp_path):
    "An ImageFolder table taken for the competition's 18 classes (a task forgotten in a script) is refused, not trained."
    for c in ('cat', 'dog'):
        (tmp_path / c).mkdir()
        for i in range(2): Image.new('RGB', (8, 8)).save(tmp_path / c / f'{i}.png')
    df, task = read_data(tmp_path)
    assert task.classes == ('cat', 'dog') and for_task(df, 'all', task) is df
    with pytest.raises(ValueError, match="classes .cat, dog.... are not those of task 'mask'.*read_data returns it"):
        for_task(df, 'all', MASK_TASK)
