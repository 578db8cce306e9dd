"""Test-time augmentation: probabilities are merged (never logits), symmetric models are unchanged by flips, batching
changes nothing."""
import pytest
import torch
import torch.nn as nn
from maskcls.labels import N_CLASSES
from maskcls.models import ThreeHeadOutput, create_model, log_joint
from maskcls.loader import ToyBatches, toy_data
from maskcls.predict import predict
from maskcls.tta import MERGES, View, get_views, merge_probs, tta_predict, tta_scores, flip_lr


class ReadLogits(nn.Module):
    "A 'model' whose logits are the first 18 values of each flattened input: a view decides its logits."
    def __init__(self): super().__init__(); self.dummy = nn.Parameter(torch.zeros(()))
    def forward(self, x): return x.flatten(1)[:, :N_CLASSES] + self.dummy


def loud_case():
    "Two confident views on class 3 and one view with 100x larger logits on class 4."
    x = torch.zeros(5, 1, 1, N_CLASSES); x[..., 3] = 6.
    loud = View('loud', lambda x: 100 * x.roll(1, -1))
    return x, ['identity', 'zoom1.0', loud]


def test_mean_of_probabilities_is_not_dominated_by_huge_logits():
    x, views = loud_case()
    r = tta_predict(ReadLogits(), ToyBatches(x, torch.full((5,), 3), bs=2), views, merge='mean')
    assert r.probs.argmax(-1).tolist() == [3] * 5
    logit_mean = torch.stack([ReadLogits()(v(x)) for v in get_views(views)]).mean(0)
    assert logit_mean.argmax(-1).tolist() == [4] * 5                 # what a logit mean would have said
    p3 = torch.softmax(x.flatten(1), -1)[0, 3]
    assert torch.allclose(r.probs[:, 3], torch.full((5,), float(2 * p3 / 3)), atol=1e-5)
    assert r.probs[:, 4].max() < 0.34                                # the loud view is one vote of three


def test_gmean_is_a_logit_mean():
    z = torch.randn(4, 6, N_CLASSES)
    assert torch.allclose(merge_probs(z.softmax(-1), 'gmean'), z.mean(0).softmax(-1), atol=1e-5)


def test_merges_give_probabilities():
    vp = torch.randn(3, 7, N_CLASSES).softmax(-1)
    for how in MERGES:
        p = merge_probs(vp, how)
        assert p.shape == (7, N_CLASSES) and torch.allclose(p.sum(-1), torch.ones(7), atol=1e-5), how
    with pytest.raises(ValueError, match='never logits'): merge_probs(vp, 'logit')


class Symmetric(nn.Module):
    "A model blind to left and right: each head's logits averaged over the image and its mirror image."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x):
        a, b = self.m(x), self.m(x.flip(-1))
        if isinstance(a, ThreeHeadOutput):
            return ThreeHeadOutput(*(h := [(u + v) / 2 for u, v in zip(a[:3], b[:3])]), log_joint(*h))
        return (a + b) / 2


@pytest.mark.parametrize('head', ['single', 'three'])
def test_symmetric_model_unchanged_by_hflip_tta(head):
    torch.manual_seed(0)
    m = Symmetric(create_model('tiny', head=head)).eval()
    x, y = toy_data(30, seed=2)
    a = tta_predict(m, ToyBatches(x, y, 8), 'none').probs
    b = tta_predict(m, ToyBatches(x, y, 8), 'face')
    assert torch.allclose(a, b.probs, atol=1e-6)
    assert torch.allclose(a.sum(-1), torch.ones(len(a)), atol=1e-5)
    assert torch.allclose(b.view_probs[0], b.view_probs[1], atol=1e-6)
    # a model that is not symmetric does see the flip
    plain = create_model('tiny', head=head).eval()
    v = tta_predict(plain, ToyBatches(x, y, 8), 'face').view_probs
    assert not torch.allclose(v[0], v[1], atol=1e-4)


@pytest.mark.parametrize('max_batch', [None, 5, 16, 1000])
def test_batched_equals_one_view_at_a_time(max_batch):
    torch.manual_seed(0)
    m = create_model('tiny').eval()
    x, y = toy_data(37, seed=1)
    r = tta_predict(m, ToyBatches(x, y, 16), 'face+', max_batch=max_batch)
    assert r.view_probs.shape == (6, 37, N_CLASSES) and r.probs.dtype == torch.float32
    assert torch.equal(r.y, y)                                       # loader order kept
    for v, pv in zip(get_views('face+'), r.view_probs):
        ref, _, _ = predict(m, [(v(xb), yb) for xb, yb in ToyBatches(x, y, 16)])
        assert torch.allclose(pv, ref, atol=1e-5), v.name
    assert torch.allclose(r.probs, r.view_probs.mean(0))


def test_scores_table_and_empty_loader():
    torch.manual_seed(0)
    m = create_model('tiny').eval()
    x, y = toy_data(36, seed=0)
    t = tta_scores(tta_predict(m, ToyBatches(x, y, 16), 'face'))
    assert list(t.index) == ['view identity', 'view hflip', 'mean of 2', 'gmean of 2', 'max of 2']
    assert {'f1', 'acc', 'f1_mask', 'f1_gender', 'f1_age'} <= set(t.columns)
    r = tta_predict(m, [], 'face')
    assert r.probs.shape == (0, N_CLASSES) and r.view_probs.shape == (2, 0, N_CLASSES)


def test_bad_views_and_merge_fail_clearly():
    m = create_model('tiny')
    with pytest.raises(ValueError, match="unknown view 'rot90'"): get_views('identity,rot90')
    with pytest.raises(ValueError, match='more than once'): get_views(['hflip', flip_lr, 'hflip'])
    with pytest.raises(ValueError, match='unknown merge'): tta_predict(m, [], 'face', merge='median')
