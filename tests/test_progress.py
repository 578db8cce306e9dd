"""Progress in a log file: one line per stage or epoch, never a redrawn bar (no carriage returns)."""

from conftest import python

MAIN = 'import sys; from maskcls.cli import main; sys.exit(main())'


def maskcls_to_file(log, *args, cwd):
    "Run `maskcls args` with stdout and stderr going to the file `log`, as `maskcls ... > log 2>&1` does."
    with open(log, 'w') as f:
        r = python(MAIN, *args, cwd=cwd, stdout=f, stderr=f)
    text = log.read_text()
    assert r.returncode == 0, text
    return text


def test_synth_and_train_write_lines_not_bars_to_a_file(tmp_path):
    text = maskcls_to_file(tmp_path / 'synth.log', 'synth', '--out', tmp_path / 'data', '--people', 8,
                           '--eval-people', 2, '--workers', 1, cwd=tmp_path)
    assert '\r' not in text
    assert [line.split(':')[0] for line in text.splitlines() if 'drawing people' in line] == ['drawing people'] * 2
    text = maskcls_to_file(tmp_path / 'train.log', 'train', '--data', tmp_path / 'data', '--out', tmp_path / 'run',
                           '--epochs', 3, '--img-size', 32, 24, '--batch-size', 16, '--no-tensorboard',
                           '--device', 'cpu', '--cache-dir', tmp_path / 'cache', cwd=tmp_path)
    lines = text.splitlines()
    assert '\r' not in text, 'a progress bar was redrawn into the log'
    assert sum(line.startswith('epoch ') for line in lines) == 3, text          # train's own line per epoch
    assert sum('decoding' in line for line in lines) == 2, text                 # the cache: started, done
    assert len(lines) < 20, text
