"Every bad submission and prediction file fails with a message that names the file, the line or the ids."
import numpy as np
import pandas as pd
import pytest
from maskcls.submission import (read_info, read_submission, write_submission, read_predictions, write_predictions,
                                predictions_to_submission, check_ids)

IDS = ['%040x' % (i * 7919) for i in range(1, 7)] + ['000123']   # 40-hex ids and one with leading zeros


@pytest.fixture
def info(tmp_path):
    p = tmp_path / 'info.csv'
    p.write_text('ImageID,ans\n' + ''.join(f'{i},0\n' for i in IDS))
    return p


def write(tmp_path, body, header='ImageID,ans', name='sub.csv'):
    p = tmp_path / name
    p.write_text((header + '\n' if header is not None else '') + body)
    return p


def rows(pairs): return ''.join(f'{i},{a}\n' for i, a in pairs)


def fails(path, info, *parts):
    with pytest.raises(ValueError) as e: read_submission(path, info)
    for s in (str(path),) + parts: assert s in str(e.value), (s, str(e.value))
    return str(e.value)


# --- what is accepted ---------------------------------------------------------------------------

def test_integer_and_integral_float_ans(tmp_path, info):
    ans = ['13.0', '1', ' 2 ', '1.00', '0', '17', '4e0']
    s = read_submission(write(tmp_path, rows(zip(IDS, ans))), info)
    assert s.tolist() == [13, 1, 2, 1, 0, 17, 4]
    assert s.dtype == np.int64


def test_rows_reordered_come_back_in_info_order(tmp_path, info):
    s = read_submission(write(tmp_path, rows(zip(IDS[::-1], range(7)))), info)
    assert s.index.tolist() == IDS
    assert s.tolist() == list(range(7))[::-1]


def test_absent_classes_are_fine(tmp_path, info):
    s = read_submission(write(tmp_path, rows((i, 5) for i in IDS)), info)
    assert set(s) == {5}


def test_leading_zero_ids_stay_strings(tmp_path, info):
    s = read_submission(write(tmp_path, rows((i, 1) for i in IDS)), info)
    assert '000123' in s.index


def test_bom_header_is_accepted(tmp_path, info):
    p = tmp_path / 'bom.csv'
    p.write_bytes(('\ufeffImageID,ans\n' + rows((i, 1) for i in IDS)).encode('utf-8'))
    assert len(read_submission(p, info)) == len(IDS)


def test_blank_lines_are_skipped_and_reported(tmp_path, info):
    p = write(tmp_path, rows((i, 1) for i in IDS[:3]) + '\n' + rows((i, 1) for i in IDS[3:]))
    with pytest.warns(UserWarning, match='skipped 1 empty lines'): s = read_submission(p, info)
    assert len(s) == len(IDS)


def test_without_info_only_duplicates_are_checked(tmp_path):
    s = read_submission(write(tmp_path, rows([('a', 1), ('b', 2)])))
    assert s.to_dict() == {'a': 1, 'b': 2}


def test_write_then_read_round_trip(tmp_path, info):
    labels = np.array([3, 0, 17, 9, 9, 1, 12])
    write_submission(tmp_path / 'out.csv', info, IDS[::-1], labels[::-1])
    text = (tmp_path / 'out.csv').read_text().splitlines()
    assert text[0] == 'ImageID,ans'
    assert [l.split(',')[0] for l in text[1:]] == IDS
    assert read_submission(tmp_path / 'out.csv', info).tolist() == labels.tolist()


# --- bad ans values: the line and the value are named --------------------------------------------

@pytest.mark.parametrize('value,why', [('13.5', 'is not a whole number'), ('18', 'is outside 0..17'),
                                       ('-1', 'is outside 0..17'), ('', 'is missing or not a number'),
                                       ('abc', 'is missing or not a number'), ('nan', 'is missing or not a number'),
                                       ('inf', 'is missing or not a number')])
def test_bad_ans(tmp_path, info, value, why):
    ans = ['1'] * 7; ans[3] = value
    msg = fails(write(tmp_path, rows(zip(IDS, ans))), info, f'line 5 (ImageID {IDS[3]})', why)
    assert 'bad rows in all' not in msg


def test_row_without_ans_field(tmp_path, info):
    body = rows((i, 1) for i in IDS[:2]) + f'{IDS[2]}\n' + rows((i, 1) for i in IDS[3:])
    fails(write(tmp_path, body), info, f'line 4 (ImageID {IDS[2]})', 'missing')


def test_many_bad_rows_are_counted(tmp_path, info):
    fails(write(tmp_path, rows(zip(IDS, ['1.5', '2', '99', '3', '', '1', '1']))), info, 'line 2', '3 bad rows in all')


# --- bad ids --------------------------------------------------------------------------------------

def test_missing_ids(tmp_path, info):
    fails(write(tmp_path, rows((i, 1) for i in IDS[:5])), info, '2 ImageIDs of info.csv are missing', IDS[5], IDS[6])


def test_extra_ids(tmp_path, info):
    fails(write(tmp_path, rows((i, 1) for i in IDS + ['deadbeef'])), info, '1 ImageIDs are not in info.csv: deadbeef')


def test_missing_and_extra_together(tmp_path, info):
    fails(write(tmp_path, rows((i, 1) for i in IDS[1:] + ['x'])), info, 'missing: ' + IDS[0], 'not in info.csv: x')


def test_duplicated_ids(tmp_path, info):
    fails(write(tmp_path, rows((i, 1) for i in IDS + [IDS[2]])), info, 'appear more than once',
          f'{IDS[2]} (lines 4, 9)')


def test_duplicated_ids_without_info(tmp_path):
    with pytest.raises(ValueError, match='more than once'): read_submission(write(tmp_path, rows([('a', 1), ('a', 2)])))


def test_empty_id(tmp_path, info):
    fails(write(tmp_path, rows([(IDS[0], 1), ('', 2)])), info, 'line 3', 'ImageID is empty')


def test_empty_file_with_header_misses_every_id(tmp_path, info):
    fails(write(tmp_path, ''), info, '7 ImageIDs of info.csv are missing')


# --- bad headers and files ------------------------------------------------------------------------

@pytest.mark.parametrize('header', ['id,ans', 'ImageID,label', 'ImageID,ans,extra'])
def test_bad_header(tmp_path, info, header):
    body = rows((i, 1) for i in IDS) if header.count(',') == 1 else ''.join(f'{i},1,0\n' for i in IDS)
    with pytest.raises(ValueError, match='header'): read_submission(write(tmp_path, body, header), info)


def test_missing_header(tmp_path, info):
    with pytest.raises(ValueError, match='header'):
        read_submission(write(tmp_path, rows((i, 1) for i in IDS), header=None), info)


def test_too_many_fields_names_the_file(tmp_path, info):
    p = write(tmp_path, rows((i, 1) for i in IDS) + f'{IDS[0]},1,2\n')
    with pytest.raises(ValueError, match='sub.csv'): read_submission(p, info)


def test_empty_and_absent_files(tmp_path, info):
    with pytest.raises(ValueError, match='empty.csv'):
        read_submission(write(tmp_path, '', header=None, name='empty.csv'), info)
    with pytest.raises(FileNotFoundError, match='nothere.csv'): read_submission(tmp_path / 'nothere.csv', info)


def test_info_with_duplicate_ids_fails(tmp_path):
    p = write(tmp_path, rows([('a', 0), ('a', 0)]), name='info.csv')
    with pytest.raises(ValueError, match='info.csv: 1 ImageIDs appear more than once'): read_info(p)


def test_write_submission_rejects_bad_labels(tmp_path, info):
    with pytest.raises(ValueError, match='integers 0..17'):
        write_submission(tmp_path / 'o.csv', info, IDS, np.arange(7) + 12)
    with pytest.raises(ValueError, match='integers 0..17'):
        write_submission(tmp_path / 'o.csv', info, IDS, np.arange(7) * 1.)
    with pytest.raises(ValueError, match='missing'): write_submission(tmp_path / 'o.csv', info, IDS[:6], np.arange(6))
    assert not (tmp_path / 'o.csv').exists()


# --- prediction files -----------------------------------------------------------------------------

@pytest.fixture
def probs():
    return np.random.default_rng(0).dirichlet(np.ones(18), size=len(IDS))


def test_predictions_round_trip_and_submission(tmp_path, info, probs):
    write_predictions(tmp_path / 'p.csv', IDS[::-1], probs[::-1])
    df = read_predictions(tmp_path / 'p.csv', info)
    assert df.index.tolist() == IDS and df.columns.tolist() == [f'p{c}' for c in range(18)]
    np.testing.assert_allclose(df.to_numpy(), probs, atol=1e-6)
    sub = predictions_to_submission(tmp_path / 'p.csv', info, tmp_path / 's.csv')
    assert sub['ans'].tolist() == probs.argmax(1).tolist()
    assert read_submission(tmp_path / 's.csv', info).tolist() == probs.argmax(1).tolist()


def test_prediction_file_bad_cases(tmp_path, info, probs):
    p = write_predictions(tmp_path / 'p.csv', IDS, probs)
    df = pd.read_csv(p, dtype=str)
    df.loc[2, 'p5'] = ''
    df.to_csv(tmp_path / 'hole.csv', index=False)
    with pytest.raises(ValueError, match=f'line 4 \\(ImageID {IDS[2]}\\): a probability is missing'):
        read_predictions(tmp_path / 'hole.csv')
    df = pd.read_csv(p, dtype=str); df.loc[1, 'p0'] = '0.9'
    df.to_csv(tmp_path / 'sum.csv', index=False)
    with pytest.raises(ValueError, match=f'first ImageID {IDS[1]}'): read_predictions(tmp_path / 'sum.csv')
    pd.read_csv(p, dtype=str).drop(columns='p17').to_csv(tmp_path / 'cols.csv', index=False)
    with pytest.raises(ValueError, match='expected columns'): read_predictions(tmp_path / 'cols.csv')
    with pytest.raises(ValueError, match='missing'): read_predictions(p, IDS + ['new'])
    with pytest.raises(ValueError, match='rows are not probabilities'):
        write_predictions(tmp_path / 'n.csv', IDS, -probs)
    with pytest.raises(ValueError, match='ids but'): write_predictions(tmp_path / 'n.csv', IDS[:3], probs)


def test_check_ids_lists_a_few_and_counts():
    with pytest.raises(ValueError, match=r'\(20 in all\)'): check_ids([], [str(i) for i in range(20)])
