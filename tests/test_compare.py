"""Comparing two submissions: flags on a hand-made case, robust reading, clear errors, and a report whose page shows
existing PNGs."""
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from maskcls.compare import class_crosstab, compare_submissions, compare_summary, pair_table
from maskcls.reports import write_compare_report
from maskcls.labels import encode

IDS = [f'{i:040x}.jpg' for i in (1, 2, 3, 4, 5, 6)]
#                 A class                       B class                       what differs
CASE = [(encode(0, 0, 0), encode(0, 0, 0)),   # same
        (encode(0, 1, 1), encode(0, 1, 2)),   # age
        (encode(1, 0, 0), encode(1, 1, 0)),   # gender
        (encode(2, 1, 2), encode(0, 1, 2)),   # mask
        (encode(0, 0, 1), encode(2, 1, 0)),   # all three
        (13, 13)]                             # same
GT = [0, encode(0, 1, 2), encode(1, 0, 0), encode(1, 1, 2), 5, 13]


def write(path, ids, ans):
    pd.DataFrame({'ImageID': ids, 'ans': ans}).to_csv(path, index=False)
    return path


@pytest.fixture
def eval_dir(tmp_path):
    d = tmp_path / 'eval'
    (d / 'images').mkdir(parents=True)
    for k, i in enumerate(IDS):
        Image.new('RGB', (24, 32), (40 * k, 100, 200 - 30 * k)).save(d / 'images' / i)
    write(d / 'info.csv', IDS, [0] * len(IDS))
    return d


@pytest.fixture
def subs(tmp_path):
    a = write(tmp_path / 'a.csv', IDS, [x for x, _ in CASE])
    b = write(tmp_path / 'b.csv', IDS, [y for _, y in CASE])
    return a, b


def test_disagreement_rows_and_attribute_flags(subs):
    d = compare_submissions(*subs)
    assert d.index.tolist() == [IDS[i] for i in (1, 2, 3, 4)]
    assert d['differs'].tolist() == ['age', 'gender', 'mask', 'mask+gender+age']
    assert d[['mask', 'gender', 'age']].to_numpy().tolist() == [[False, False, True], [False, True, False],
                                                               [True, False, False], [True, True, True]]
    assert d['a'].tolist() == [x for x, y in CASE if x != y] and d['b'].tolist() == [y for x, y in CASE if x != y]
    s = compare_summary(pair_table(*subs))
    assert (s['images'], s['agree'], s['disagree']) == (6, 2, 4)
    assert (s['mask_differs'], s['gender_differs'], s['age_differs']) == (2, 2, 2)
    assert s['agreement'] == pytest.approx(2 / 6)
    ct = class_crosstab(pair_table(*subs))
    assert ct.to_numpy().sum() == 4 and np.trace(ct.to_numpy()) == 0


def test_who_was_right(subs, tmp_path):
    gt = write(tmp_path / 'gt.csv', IDS, GT)
    d = compare_submissions(*subs, gt=gt)
    assert d['right'].tolist() == ['b', 'a', 'neither', 'neither']
    s = compare_summary(pair_table(*subs, gt=gt))
    assert (s['a_right'], s['b_right'], s['neither_right']) == (1, 1, 2)
    assert s['acc_a'] == pytest.approx(3 / 6) and s['acc_b'] == pytest.approx(3 / 6)


def test_reordered_rows_and_float_answers(subs, tmp_path, eval_dir):
    a, _ = subs
    order = [5, 3, 0, 4, 2, 1]
    b = tmp_path / 'b_messy.csv'
    b.write_text('ImageID,ans\n' + ''.join(f'{IDS[i]},{CASE[i][1]}.0\n' for i in order))
    for info in (None, eval_dir / 'info.csv'):
        d = compare_submissions(a, b, info=info)
        assert d.index.tolist() == [IDS[i] for i in (1, 2, 3, 4)], info   # A's / info.csv's order
        assert d['b'].dtype == np.int64 and d['b'].tolist() == [CASE[i][1] for i in (1, 2, 3, 4)]
    # Series work too, with integral floats
    sa = pd.Series([float(x) for x, _ in CASE], index=IDS)
    assert len(compare_submissions(sa, b)) == 4


def test_mismatched_ids_fail_clearly(subs, tmp_path, eval_dir):
    a, _ = subs
    b = write(tmp_path / 'b_other.csv', IDS[:4] + ['f' * 40 + '.jpg'], [0] * 5)
    with pytest.raises(ValueError) as e: compare_submissions(a, b)
    msg = str(e.value)
    for part in (str(a), str(b), '2 only in', IDS[4], IDS[5], '1 only in', 'f' * 40, 'info='):
        assert part in msg, (part, msg)
    with pytest.raises(ValueError, match='missing'): compare_submissions(a, b, info=eval_dir / 'info.csv')
    with pytest.raises(ValueError, match='only in'): compare_submissions(a, a, gt=b)
    bad = write(tmp_path / 'b_bad.csv', IDS, [0, 1, 2, 3, 4, 13.5])
    with pytest.raises(ValueError, match=r'line 7 .*13\.5'): compare_submissions(a, bad)
    with pytest.raises(ValueError, match=r'ans 18 is outside 0\.\.17'):
        compare_submissions(pd.Series([0, 1, 2, 3, 4, 18], index=IDS), a)


def test_report_written_and_references_existing_pngs(subs, tmp_path, eval_dir):
    write(eval_dir / 'gt.csv', IDS, GT)
    out = tmp_path / 'report'
    rep = write_compare_report(*subs, eval_dir, out, n=3)
    page = rep['index'].read_text(encoding='utf-8')
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert {'disagreements.png', 'mask.png', 'gender.png', 'age.png'} <= set(srcs)
    for s in srcs: assert (out / s).is_file() and (out / s).stat().st_size > 1000, s
    for href in re.findall(r'<a href="([^"]+)"', page): assert (out / href).is_file(), href   # CSV and photo links
    assert '4 of 6 images differ' in page
    assert json.loads(rep['summary'].read_text())['b_right'] == 1
    assert len(pd.read_csv(rep['disagreements_csv'])) == 4
    # the parent folder of eval/ works as well
    rep2 = write_compare_report(*subs, eval_dir.parent, tmp_path / 'report2')
    assert rep2['index'].is_file()


def test_identical_files_report(subs, tmp_path, eval_dir):
    a, _ = subs
    rep = write_compare_report(a, a, eval_dir, tmp_path / 'same')
    assert not list((tmp_path / 'same').glob('*.png'))
    assert 'agree on every image' in rep['index'].read_text()


def test_missing_image_named(subs, tmp_path, eval_dir):
    (eval_dir / 'images' / IDS[2]).unlink()
    with pytest.raises(FileNotFoundError, match=IDS[2]): write_compare_report(*subs, eval_dir, tmp_path / 'r')
