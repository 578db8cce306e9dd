"""The front door: `import maskcls` is quick, the README's Python runs, and a script trains, predicts and ensembles
through the public names alone."""
import pydoc, re, textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import maskcls
from conftest import ROOT, python



def _loaded(code: str, tmp_path) -> set:
    "The heavy libraries in sys.modules after running `code` in a fresh interpreter."
    r = python(code + '\nimport sys; print(" ".join(m for m in ("torch", "torchvision", "sklearn", "scipy", '
               '"pandas", "matplotlib") if m in sys.modules))', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_import_maskcls_loads_no_heavy_library(tmp_path):
    assert _loaded('import maskcls; maskcls.__version__; dir(maskcls)', tmp_path) == set()


def test_labels_and_ensemble_load_without_scikit_learn(tmp_path):
    assert not {'sklearn', 'scipy', 'torch'} & _loaded('import maskcls.labels, maskcls.ensemble', tmp_path)


def test_submission_loads_without_torch(tmp_path):
    assert not {'torch', 'torchvision', 'matplotlib'} & _loaded('import maskcls.submission', tmp_path)


def test_public_names_resolve_and_are_documented():
    assert sorted(maskcls.__all__) == sorted(maskcls._API)
    for name in maskcls.__all__:
        obj = getattr(maskcls, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    with pytest.raises(AttributeError, match='no_such'): maskcls.no_such
    text = pydoc.render_doc(maskcls.Config, renderer=pydoc.plaintext)
    assert 'old_age = 60: first age of the old group' in text and "heads = 'single'" in text


def test_torchvision_spellings_and_loaders(tmp_path):
    "num_classes builds that many outputs; an Augment is a per-image transform; a loader of images alone predicts."
    from torchvision.datasets import ImageFolder
    from maskcls.tta import tta_predict
    m = maskcls.create_model('tiny', num_classes=3)
    assert m(torch.zeros(2, 3, 32, 24)).shape == (2, 3)
    for c in ('a', 'b'):
        (tmp_path / c).mkdir()
        Image.new('RGB', (24, 32), (9, 99, 199)).save(tmp_path / c / '0.png')
    ds = ImageFolder(str(tmp_path), transform=maskcls.Augment(seed=0))
    x, y = ds[1]
    assert x.shape == (3, 32, 24) and x.dtype == torch.float32 and y == 1
    imgs = torch.utils.data.DataLoader(torch.stack([ds[i][0] for i in range(2)]), batch_size=1)
    r = tta_predict(m, imgs, 'face')
    assert r.probs.shape == (2, 3) and len(r.y) == 0
    with pytest.raises(ValueError, match='n_classes='): maskcls.full_augment(seed=0)(torch.zeros(4, 3, 8, 6,
                                                                                             dtype=torch.uint8),
                                                                                 torch.tensor([0, 1, 2, 0]))


def _python_blocks(md: str) -> list:
    return re.findall(r'```python\n(.*?)```', md, re.S)


def test_readme_python_examples_run(tmp_path):
    blocks = _python_blocks((ROOT / 'README.md').read_text())
    assert any('import maskcls' in b for b in blocks), 'the README shows no maskcls API example'
    code = '\n'.join(blocks) + textwrap.dedent('''
        from pathlib import Path
        assert pred.probs.shape == (len(valid_df), 18)
        assert (Path(cfg.out) / 'best.pt').exists()
        print('README OK')''')
    r = python(code, cwd=tmp_path, env=dict(MASKCLS_CACHE=str(tmp_path / 'cache')))
    assert r.returncode == 0 and 'README OK' in r.stdout, r.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ['cache']      # the images were cached in $MASKCLS_CACHE only


SCRIPT = '''
import sys
from pathlib import Path
import maskcls

root = Path(sys.argv[1])
cfg = maskcls.Config(data=str(root / 'colours'), img_size=(32, 24), epochs=3, batch_size=8, device='cpu',
                     tensorboard=False)
df, task = maskcls.read_data(cfg.data)
train_df, valid_df = maskcls.split_for(cfg, df)
assert not set(train_df['person']) & set(valid_df['person'])
files = []
for seed in (0, 1):
    run = root / f'run{seed}'                     # train_run makes the folder
    c = maskcls.Config(**{**vars(cfg), 'seed': seed, 'out': str(run)})
    maskcls.train_run(c, train_df, valid_df, run, progress=False, task=task)
    pred = maskcls.predict_dir(run, valid_df, views='face', progress=False)
    files.append(maskcls.write_predictions(root / f'pred{seed}.csv', valid_df['path'], pred.probs.numpy(), 3))
model, _ = maskcls.load_run(root / 'run0')
ens = maskcls.ensemble_files(files, 'soft')
s = maskcls.score(valid_df['label'], ens['probs'])
print(f'ensemble of {len(files)}: macro F1 {s.f1:.3f}, accuracy {s.acc:.3f}, {len(s.parts)} classes')
'''


def test_a_script_trains_predicts_and_ensembles_through_the_public_api(tmp_path):
    assert re.findall(r'(?:from|import) maskcls\S*', SCRIPT) == ['import maskcls']   # the public names only
    rng = np.random.default_rng(0)
    for c, channel in (('red', 0), ('green', 1), ('blue', 2)):
        (tmp_path / 'colours' / c).mkdir(parents=True)
        for i in range(12):
            a = rng.integers(0, 80, (32, 24, 3), dtype=np.uint8); a[..., channel] += 150
            Image.fromarray(a).save(tmp_path / 'colours' / c / f'{i}.png')
    (tmp_path / 'work').mkdir()
    r = python(SCRIPT, tmp_path, cwd=tmp_path / 'work', env={'MASKCLS_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'ensemble of 2: macro F1' in r.stdout and '3 classes' in r.stdout
    assert list((tmp_path / 'work').iterdir()) == []              # no cache (or anything) where the script ran
    assert any((tmp_path / 'cache').iterdir())
    assert (tmp_path / 'pred1.csv').read_text().startswith('ImageID,p0,p1,p2')
