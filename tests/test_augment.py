"Batched augmentation: per-sample parameters, seeding, soft targets, torchvision agreement, CPU/CUDA agreement."
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from maskcls.augment import (Affine, Augment, ColorJitter, CutMix, Erase, Flip, MixUp, Noise, ResizedCrop,
                             affine_theta, eval_transform, full_augment, hash_normal, hash_uniform, light_augment,
                             normalize, shift_hue, to_float, warp)

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs CUDA: runs on a GPU machine with `make test` or '
                                 '`pytest tests/test_augment.py tests/test_loader.py`')


def batch(n=16, h=32, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (n, 3, 4, 3), generator=g, dtype=torch.uint8).float()
    return F.interpolate(small, size=(h, w), mode='bilinear').round().to(torch.uint8), torch.randint(0, 18, (n,),
                                                                                                     generator=g)


@pytest.mark.parametrize('op',
                         [Affine(p=1.0, shear=10), ResizedCrop(p=1.0), ColorJitter(p=1.0), Noise(p=1.0), Erase(p=1.0)])
def test_samples_get_different_parameters(op):
    g = torch.Generator().manual_seed(0)
    prm = op.draw(8, (32, 24), g)
    for k, v in prm.items():
        if v.dtype.is_floating_point and v.numel() >= 8 and k not in ('offset',):
            flat = v.reshape(8, -1)
            # varies per sample (or constant)
            assert len({tuple(r.tolist()) for r in flat}) == 8 or (flat == flat[0]).all(), k
    xb, _ = batch(1)
    out = op(to_float(xb).expand(8, -1, -1, -1), torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8                                 # same image, 8 results


def test_two_samples_one_batch_differ_in_pipeline():
    xb, yb = batch(1)
    out, _ = full_augment(seed=0, n_classes=18)(xb.expand(32, -1, -1, -1), yb.expand(32))
    assert not torch.allclose(out[0], out[1])
    assert len({tuple(o.flatten().tolist()) for o in out}) == 32


def test_seeded_reproducibility():
    xb, yb = batch()
    a, b, c = (full_augment(seed=s, n_classes=18)(xb, yb) for s in (7, 7, 8))
    torch.testing.assert_close(a[0], b[0]); torch.testing.assert_close(a[1], b[1])
    assert not torch.allclose(a[0], c[0])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    aug = light_augment(seed=0)
    torch.testing.assert_close(aug(xb, yb, g1)[0], aug(xb, yb, g2)[0])   # an explicit generator decides alone


def test_chunking_does_not_change_result():
    xb, yb = batch(20)
    ref = full_augment(seed=1, n_classes=18, chunk=20)(xb, yb)
    for chunk in (1, 3, 16):
        out = full_augment(seed=1, n_classes=18, chunk=chunk)(xb, yb)
        torch.testing.assert_close(out[0], ref[0], atol=1e-5, rtol=0); torch.testing.assert_close(out[1], ref[1])


@pytest.mark.parametrize('op', [MixUp(p=1.0, alpha=0.4), CutMix(p=1.0), MixUp(p=0.5), CutMix(p=0.5, alpha=0.3)])
def test_mixed_targets_sum_to_one(op):
    xb, yb = batch(64)
    x, y = Augment(op, seed=0, n_classes=18)(xb, yb)
    assert y.shape == (64, 18) and (y >= 0).all()
    torch.testing.assert_close(y.sum(1), torch.ones(64))
    own = y[torch.arange(64), yb]
    assert (own >= 0).all() and own.min() < 1                                # some samples really got mixed


def test_cutmix_area_matches_label_weight():
    xb = torch.zeros(8, 3, 20, 10, dtype=torch.uint8); xb[:4] = 255            # half white, half black images
    yb = torch.tensor([0] * 4 + [1] * 4)
    op = CutMix(p=1.0)
    prm = op.draw(8, (20, 10), torch.Generator().manual_seed(2))
    x, y = op.apply(to_float(xb), F.one_hot(yb, 18).float(), **prm)
    for i in range(8):
        j = prm['perm'][i]
        if yb[i] != yb[j]:
            kept = (x[i, 0] == to_float(xb)[i, 0]).float().mean()
            torch.testing.assert_close(y[i, yb[i]], kept)


def test_mixing_needs_labels_and_order():
    xb, _ = batch(4)
    with pytest.raises(ValueError, match='labels'): Augment(MixUp())(xb)
    with pytest.raises(ValueError, match='after'): Augment(CutMix(), Flip())


def test_corners_filled_from_image():
    x = torch.full((4, 3, 32, 24), 0.8)
    th = affine_theta([30.0, -30.0, 45.0, 10.0], size=(32, 24))
    assert warp(x, th, 'reflection').min() > 0.79 and warp(x, th, 'border').min() > 0.79
    assert warp(x, th, 'zeros').min() < 0.1


def test_affine_matches_torchvision():
    xb, _ = batch(1, 40, 30); img = to_float(xb)
    for angle, tr, sc, sh in [(17.0, (3.0, -2.0), 0.9, (5.0, 0.0)), (-40.0, (0.0, 4.0), 1.2, (0.0, 7.0)),
                              (90.0, (0.0, 0.0), 1.0, (0.0, 0.0))]:
        ours = warp(img, affine_theta(angle, tr, sc, sh, (40, 30)), 'zeros')
        tv = TF.affine(img, angle=angle, translate=list(tr), scale=sc, shear=list(sh),
                       interpolation=v2.InterpolationMode.BILINEAR)
        torch.testing.assert_close(ours, tv, atol=1e-4, rtol=0)


def test_hue_matches_torchvision_including_grey_and_ties():
    x = torch.rand(6, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    x[0] = 0.5; x[1, 1] = x[1, 0]; x[2, 2] = x[2, 1]; x[3, :, :4] = 0; x[3, :, 4:8] = 1
    hue = torch.tensor([0.3, -0.5, 0.5, 0.1, -0.07, 0.0])
    ref = torch.stack([TF.adjust_hue(x[i], hue[i].item()) for i in range(6)])
    torch.testing.assert_close(shift_hue(x, hue), ref, atol=1e-5, rtol=0)


def test_hash_noise_is_fixed_and_prefix_stable():
    u = hash_uniform(torch.tensor([0, 1]), 5)
    assert ((u > 0) & (u < 1)).all() and not torch.equal(u[0], u[1])
    z = hash_normal(torch.tensor([5]), 11)
    torch.testing.assert_close(hash_normal(torch.tensor([5]), 4), z[:, :4])
    torch.testing.assert_close(hash_normal(torch.tensor([5]), 11), z)           # a pure function of (seed, index)


def test_eval_transform_is_deterministic_normalisation():
    xb, _ = batch(4)
    torch.testing.assert_close(eval_transform(xb), normalize(xb.float() / 255))
    torch.testing.assert_close(eval_transform(xb), eval_transform(xb))
    assert eval_transform(xb, size=(16, 12)).shape == (4, 3, 16, 12)


def test_empty_batch():
    xb = torch.zeros(0, 3, 8, 6, dtype=torch.uint8)
    x, y = light_augment(seed=0)(xb, torch.zeros(0, dtype=torch.long))
    assert x.shape == (0, 3, 8, 6)


@cuda
def test_cpu_and_cuda_agree():
    xb, yb = batch(64, 64, 48)
    xc, yc = full_augment(seed=0, n_classes=18)(xb, yb)
    xg, yg = full_augment(seed=0, n_classes=18)(xb.cuda(), yb.cuda())
    torch.testing.assert_close(xg.cpu(), xc, atol=1e-3, rtol=0)
    torch.testing.assert_close(yg.cpu(), yc, atol=1e-6, rtol=0)
    torch.testing.assert_close(hash_normal(torch.arange(3), 999, 'cuda').cpu(), hash_normal(torch.arange(3), 999),
                               atol=1e-5, rtol=0)
