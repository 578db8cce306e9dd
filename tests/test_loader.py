"Samplers and the loader: balance, exactly-once evaluation, reproducibility across workers, threads, errors."
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from maskcls.augment import light_augment, full_augment
from maskcls.cache import build_cache
from maskcls.loader import Loader
from maskcls.sampling import oversample, shuffled, undersample, weighted

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs CUDA: runs on a GPU machine with `make test` or '
                                 '`pytest tests/test_augment.py tests/test_loader.py`')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    from maskcls.synth import make_dataset
    from maskcls.layout import read_train
    root = tmp_path_factory.mktemp('synth')
    make_dataset(root, people=8, eval_people=0, seed=5, progress=False)
    df = read_train(root, progress=False)
    return df, build_cache(df.path, root / 'cache', size=(24, 18), workers=0, progress=False)


# --- samplers ----------------------------------------------------------------------------------------

def imbalanced(seed=0):
    sizes = np.random.default_rng(seed).integers(3, 400, 18)
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(18), sizes)), sizes


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_sampler_balance(seed):
    labels, sizes = imbalanced(seed)
    rng = np.random.default_rng(seed)
    assert (np.bincount(labels[undersample(labels, rng)], minlength=18) == sizes.min()).all()
    assert (np.bincount(labels[oversample(labels, rng)], minlength=18) == sizes.max()).all()
    w = weighted(labels, rng, n=180_000)
    share = np.bincount(labels[w], minlength=18) / len(w)
    assert np.abs(share - 1 / 18).max() < 0.004                                 # within tolerance of balanced
    half = weighted(labels, rng, n=180_000, power=0.5)
    p = np.sqrt(sizes) / np.sqrt(sizes).sum()
    assert np.abs(np.bincount(labels[half], minlength=18) / len(half) - p).max() < 0.005


def test_sampler_caps_and_floors():
    labels, sizes = imbalanced(3)
    rng = np.random.default_rng(0)
    u = undersample(labels, rng, cap=50)
    assert (np.bincount(labels[u], minlength=18) == np.minimum(sizes, 50)).all() and len(set(u)) == len(u)
    o = oversample(labels, rng, floor=100)
    assert (np.bincount(labels[o], minlength=18) == np.maximum(sizes, 100)).all() and set(o) == set(range(len(labels)))
    assert sorted(shuffled(labels, rng)) == list(range(len(labels)))


def test_person_level_sampling_keeps_people_whole():
    people = np.repeat(np.arange(30), 7)
    cls = np.where(np.arange(30) < 24, 0, 1)                                   # 24 people of class 0, 6 of class 1
    labels = np.repeat(cls, 7) * 3 + np.tile([0, 0, 0, 0, 0, 6, 12], 30)
    rng = np.random.default_rng(0)
    for fn, per_class in ((undersample, 6), (oversample, 24)):
        rows = fn(labels, rng, groups=people)
        counts = pd.Series(people[rows]).value_counts()
        assert (counts % 7 == 0).all()                                          # whole people (repeats allowed)
        assert np.bincount(np.repeat(cls, 7)[rows]).tolist() == [per_class * 7] * 2
    rows = weighted(labels, rng, n=3000, groups=people)
    assert len(rows) == 3000 * 7 and abs(np.repeat(cls, 7)[rows].mean() - 0.5) < 0.05


# --- the loader --------------------------------------------------------------------------------------

@pytest.mark.parametrize('bs,workers', [(5, 1), (13, 3), (1000, 2)])
def test_eval_visits_every_image_exactly_once(data, bs, workers):
    df, cache = data
    df = df.sample(frac=1, random_state=0)                                     # any index, any order
    dl = Loader(df, cache, bs=bs, device='cpu', with_idx=True, workers=workers)
    ib = torch.cat([b[2] for b in dl]).numpy()
    assert sorted(ib) == list(range(len(df))) and (ib == np.arange(len(df))).all()
    assert len(dl) == -(-len(df) // bs)
    ys = torch.cat([b[1] for b in dl]).numpy()
    assert (ys == df.label.to_numpy()).all()


def test_eval_rejects_training_options(data):
    df, cache = data
    for kw in (dict(drop_last=True), dict(sampler=undersample), dict(epoch_len=10)):
        with pytest.raises(ValueError, match='every row exactly once'): Loader(df, cache, **kw)


def test_training_batches_and_epoch_length(data):
    df, cache = data
    dl = Loader(df, cache, bs=10, train=True, device='cpu', with_idx=True)
    sizes = [len(b[2]) for b in dl]
    assert sizes == [10] * (len(df) // 10)                                       # last partial batch dropped
    dl = Loader(df, cache, bs=10, train=True, device='cpu', drop_last=False)
    assert sum(len(b[1]) for b in dl) == len(df)
    dl = Loader(df, cache, bs=8, train=True, device='cpu', epoch_len=130, sampler=partial(undersample, cap=2),
                with_idx=True)
    assert len(dl.order()) == 130 and len(dl) == 16


def test_same_batches_whatever_the_workers(data):
    df, cache = data
    runs = []
    for w in (1, 2, 4):
        dl = Loader(df, cache, bs=7, train=True, tfm=full_augment(n_classes=18), device='cpu', seed=3, workers=w, with_idx=True)
        dl.set_epoch(5)
        runs.append(list(dl))
    for other in runs[1:]:
        for (xa, ya, ia), (xb, yb, ib) in zip(runs[0], other):
            assert torch.equal(ia, ib); torch.testing.assert_close(xa, xb); torch.testing.assert_close(ya, yb)


def test_epochs_differ_and_replay(data):
    df, cache = data
    dl = Loader(df, cache, bs=16, train=True, tfm=light_augment(), device='cpu', seed=1, with_idx=True)
    e0, e1 = list(dl), list(dl)
    assert not torch.equal(torch.cat([b[2] for b in e0]), torch.cat([b[2] for b in e1]))
    dl.set_epoch(1)
    for (xa, _, ia), (xb, _, ib) in zip(e1, dl): assert torch.equal(ia, ib) and torch.equal(xa, xb)


def test_threads_restored_even_after_break(data):
    df, cache = data
    before = torch.get_num_threads()
    dl = Loader(df, cache, bs=4, train=True, tfm=light_augment(), device='cpu', workers=2)
    for i, _ in enumerate(dl):
        if i == 2: break
    assert torch.get_num_threads() == before
    list(dl)
    assert torch.get_num_threads() == before


def test_errors_in_workers_reach_the_caller(data):
    df, cache = data
    def broken(xb, yb, g): raise RuntimeError('tfm failed on purpose')
    with pytest.raises(RuntimeError, match='on purpose'):
        list(Loader(df, cache, bs=4, train=True, tfm=broken, device='cpu'))


def test_uncached_paths_are_named(data, tmp_path):
    df, cache = data
    extra = df.iloc[:2].assign(path=[str(tmp_path / 'a.jpg'), str(tmp_path / 'b.jpg')])
    with pytest.raises(KeyError, match='a.jpg'): Loader(pd.concat([df, extra]), cache)


def test_sampler_needs_labels(data):
    df, cache = data
    with pytest.raises(ValueError, match='needs labels'):
        Loader(df.drop(columns='label'), cache, train=True, sampler=undersample)


def test_preload_gives_the_same_batches(data):
    df, cache = data
    a = [b[0] for b in Loader(df, cache, bs=9, device='cpu')]
    b = [b[0] for b in Loader(df, cache, bs=9, device='cpu', preload=True)]
    for x, y in zip(a, b): assert torch.equal(x, y)


@cuda
def test_cuda_loader_matches_cpu(data):
    df, cache = data
    for preload in (False, True):
        c = list(Loader(df, cache, bs=8, train=True, tfm=full_augment(n_classes=18), device='cpu', seed=2))
        g = list(Loader(df, cache, bs=8, train=True, tfm=full_augment(n_classes=18), device='cuda', seed=2, preload=preload))
        for (xc, yc), (xg, yg) in zip(c, g):
            assert xg.is_cuda and yg.is_cuda
            torch.testing.assert_close(xg.cpu(), xc, atol=1e-3, rtol=0); torch.testing.assert_close(yg.cpu(), yc,
                                                                                                    atol=1e-6, rtol=0)
