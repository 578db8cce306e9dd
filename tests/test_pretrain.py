"""`maskcls pretrain` from the command line: a small build whose weights `--weights` takes, its refusals, and a
generation cut short."""
import json

import torch

from conftest import file_digest, link_synth12, run


def test_pretrain_builds_a_start_that_train_loads(tmp_path, synth12):
    r = run('pretrain', '--people', 12, '--epochs', 1, '--out', 'start.pth', '--data', 'pre', '--run', 'pre_run',
            '--seed', 1001, '--cache-dir', 'pcache', cwd=tmp_path)
    assert 'start.pth' in r.stdout and 'held-out people' in r.stdout, r.stdout
    card = json.loads((tmp_path / 'start.json').read_text())
    assert card['sha256'] == file_digest(tmp_path / 'start.pth') and card['seed'] == 1001 and card['people'] == 12
    assert all(k.startswith('backbone.') for k in torch.load(tmp_path / 'start.pth', weights_only=True))
    link_synth12(tmp_path, synth12)
    t = run('train', '--data', 'data', '--cache-dir', 'cache', '--out', 'ft', '--img-size', 32, 24, '--epochs', 1,
            '--weights', 'start.pth', '--no-tensorboard', cwd=tmp_path)
    assert (tmp_path / 'ft' / 'best.pt').exists(), t.stdout + t.stderr
    assert 'weights: start.pth' in (tmp_path / 'ft' / 'config.yaml').read_text()


def test_pretrain_refuses_lesson_seeds_and_other_populations(tmp_path):
    r = run('pretrain', '--seed', 0, '--out', 'x.pth', '--data', 'pre', cwd=tmp_path, ok=False)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert r.stderr.strip().count('\n') == 0 and '--seed 1000' in r.stderr, r.stderr
    assert not (tmp_path / 'x.pth').exists() and not (tmp_path / 'pre').exists()
    run('synth', '--out', 'pre', '--people', 5, '--eval-people', 0, '--seed', 1000, cwd=tmp_path)
    r = run('pretrain', '--people', 12, '--out', 'x.pth', '--data', 'pre', cwd=tmp_path, ok=False)
    assert r.returncode == 2 and 'pre holds 5 people, not 12: remove it or give --data another folder' in r.stderr
    assert not (tmp_path / 'x.pth').exists()


def test_pretrain_regenerates_a_generation_cut_short(tmp_path):
    part = tmp_path / 'pre.partial' / 'train' / 'images'
    part.mkdir(parents=True); (part / 'half_written.jpg').write_bytes(b'\xff\xd8')   # what a killed run leaves
    run('pretrain', '--people', 12, '--epochs', 1, '--out', 'start.pth', '--data', 'pre', '--run', 'r',
        '--seed', 1001, cwd=tmp_path)
    assert not (tmp_path / 'pre.partial').exists()
    names = [p.name for p in (tmp_path / 'pre' / 'train' / 'images').iterdir()]
    assert 'half_written.jpg' not in names, names                   # a fresh generation: nothing of the cut one left
    assert len([n for n in names if not n.startswith('.')]) == 12, names   # 12 people (the dot files are the layout's)
