"Config: every bound and choice lives in its field's metadata and is checked by one loop; the config imports no models."
from dataclasses import fields

import pytest

from maskcls.config import Config, ConfigError, config_from_dict
from conftest import python

BOUNDED = [f for f in fields(Config) if {'min', 'max', 'gt', 'lt'} & set(f.metadata)]


def test_every_field_has_help_and_metadata():
    for f in fields(Config):
        assert f.metadata['help'], f.name
        assert 'choices' in f.metadata, f.name


def _just_outside(f):
    "Values of field `f` just outside each of its bounds (a tuple field: one element outside)."
    md, default = f.metadata, getattr(Config(), f.name)
    step = 1 if isinstance(default, int) or (isinstance(default, tuple) and isinstance(default[0], int)) else 1e-6
    bad = [md['min'] - step] if 'min' in md else []
    bad += [md['gt']] if 'gt' in md else []
    bad += [md['max'] + step] if 'max' in md else []
    bad += [md['lt']] if 'lt' in md else []
    return [(b,) + default[1:] if isinstance(default, tuple) else b for b in bad]


@pytest.mark.parametrize('f', BOUNDED, ids=[f.name for f in BOUNDED])
def test_each_bound_in_the_metadata_is_checked(f):
    assert Config()                                              # the defaults lie within every bound
    for v in _just_outside(f):
        with pytest.raises(ConfigError, match=rf'^{f.name}: must .*, got '):
            Config(**{f.name: v})


def test_bound_messages_say_what_is_allowed():
    for kw, msg in [(dict(lr=-0.1), 'lr: must not be negative, got -0.1'),
                    (dict(epochs=0), 'epochs: must be at least 1, got 0'),
                    (dict(hflip=1.5), 'hflip: must be at least 0 and at most 1, got 1.5'),
                    (dict(val_fraction=1), 'val_fraction: must be above 0 and below 1, got 1.0'),
                    (dict(ema=1.0), 'ema: must be at least 0 and below 1, got 1.0'),
                    (dict(img_size=(256, 4)), 'img_size: must be at least 8, got (256, 4)'),
                    (dict(old_age=101), 'old_age: must be above 30 and at most 100, got 101')]:
        with pytest.raises(ConfigError) as e: Config(**kw)
        assert str(e.value) == msg


def test_choices_and_cross_field_rules():
    with pytest.raises(ConfigError,
                       match=r"loss: 'focall' is not one of \['ce', 'focal', 'f1'\] \(did you mean 'focal'\?\)"):
        Config(loss='focall')
    with pytest.raises(ConfigError, match='fold: 5 is not below folds=5'): Config(fold=5, folds=5)
    with pytest.raises(ConfigError, match='scale: expected low <= high'): Config(scale=(1.2, 0.9))
    with pytest.raises(ConfigError, match='weights: the tiny model'): Config(weights='DEFAULT')
    assert Config(ema=0.999, fold=4, folds=5, scale=(1, 1)).ema == 0.999


def test_bounds_are_metadata_keys_only():
    from maskcls.config import _opt
    assert _opt(3, 'a count', min=1).metadata['min'] == 1
    with pytest.raises(TypeError, match="unknown bound"): _opt(1, 'x', minimum=0)


def test_config_imports_no_models_and_no_torch():
    code = ('import sys, maskcls.config; '
            'print(sorted(m for m in sys.modules if m in ("torch", "torchvision", "maskcls.models")))')
    r = python(code)
    assert r.returncode == 0 and r.stdout.strip() == '[]', r.stderr
    # a model name is checked where models are built, and by the CLI
    assert Config(model='resnet19').model == 'resnet19'
    assert config_from_dict(dict(model='resnet18')).model == 'resnet18'
