"Real CPU builds of a few backbones, the pretrained-weights path (without downloading), and a learning check."
import pytest
import torch
import torchvision
from maskcls import models
from maskcls.models import create_model, class_probs, freeze_backbone, unfreeze, n_params
from maskcls.losses import make_loss
from maskcls.labels import marginals


@pytest.mark.parametrize('name,head', [('resnet18', 'single'), ('resnet18', 'three'), ('efficientnet_b0', 'three'),
                                       ('regnet_y_400mf', 'single'), ('mobilenet_v3_small', 'three')])
def test_real_backbones_give_18_classes(name, head):
    torch.manual_seed(0)
    m = create_model(name, head=head).eval()
    with torch.no_grad(): out = m(torch.randn(2, 3, 128, 96))     # height 128, width 96: not square
    p = class_probs(out)
    assert p.shape == (2, 18) and torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(2))
    if head == 'three':
        for got, logits in zip(marginals(p), out[:3]): torch.testing.assert_close(got, logits.softmax(-1))


def test_pretrained_name_reaches_torchvision_without_download(monkeypatch):
    seen = {}
    real = models.get_model
    def fake(name, weights=None, **kw):
        seen['weights'] = weights
        return real(name, weights=None, **kw)                        # random init instead of downloading
    monkeypatch.setattr(models, 'get_model', fake)
    m = create_model('resnet18', weights='DEFAULT', head='three')
    assert seen['weights'] is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert 'ResNet18_Weights.IMAGENET1K_V1' in m.weights_info


def test_channels_last_and_frozen_backbone_still_learn():
    torch.manual_seed(0)
    m = create_model('tiny', head='three').to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 32, 24).to(memory_format=torch.channels_last)
    y = torch.randint(0, 18, (16,))
    loss_fn = make_loss('three_head', base='ce', smoothing=0.1)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    freeze_backbone(m, train_bn=False)
    frozen = m.backbone[0].weight.detach().clone()
    first = None
    for step in range(20):
        if step == 5: unfreeze(m)
        loss = loss_fn(m(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if step == 4: assert torch.equal(m.backbone[0].weight, frozen)  # the optimiser left the frozen backbone alone
        first = loss.item() if first is None else first
    assert not torch.equal(m.backbone[0].weight, frozen)                 # and trained it after unfreeze
    assert loss.item() < first * 0.5, (first, loss.item())               # memorising 16 images works
    assert n_params(m, trainable=True) == n_params(m)
