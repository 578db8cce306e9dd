"""Data flows one way: a module imports only modules below it in LAYERS, also inside functions; inference never
loads the training loop."""
import ast

import pytest

from conftest import ROOT, python

PKG = ROOT / 'maskcls'
LAZY = {'__init__'}     # the public API maps names to every module, imported on first use


# The order data flows in, bottom first: a module may import only modules before it. The course lessons and the
# engine's reference notebooks interleave here (a lesson's module sits above the engine modules it uses), so the
# order is written down once, in this list, rather than read from the notebooks' numbers.
LAYERS = ['files', 'labels', 'progress', 'layout', 'synth', 'pages', 'eda', 'eda_report', 'cache', 'augment',
          'sampling', 'loader', 'models', 'losses', 'config', 'results', 'runtime', 'predict', 'rundir', 'runs',
          'checkpoints', 'optim', 'splits', 'train', 'pretrain', 'cv', 'suspects', 'tta', 'inference', 'pseudo', 'ensemble',
          'average', 'submission', 'compare', 'reports', 'hpo', 'hpo_page', 'hpo_workers', 'experiments', 'jobs', 'demo', 'cli']


def maskcls_imports(py) -> set:
    "Every maskcls module `py` imports, at the top or inside a function."
    names, tree = set(), ast.parse(py.read_text())
    typing_only = {id(n) for t in ast.walk(tree) if isinstance(t, ast.If) and ast.unparse(t.test) == 'TYPE_CHECKING'
                   for b in t.body for n in ast.walk(b)}                      # annotations only: never run
    for node in ast.walk(tree):
        if id(node) in typing_only: continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: names.add(node.module.split('.')[0])
            elif node.level == 0 and node.module and node.module.startswith('maskcls.'): names.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split('.')[1] for a in node.names if a.name.startswith('maskcls.')}
    return names


MODULES = sorted(p.stem for p in PKG.glob('*.py') if p.stem not in ('_modidx', *LAZY))


def test_every_module_has_a_layer():
    missing = sorted(set(MODULES) - set(LAYERS))
    assert not missing, f'modules not in LAYERS: {missing}: add each where it belongs in tests/test_layers.py'


@pytest.mark.parametrize('module', MODULES)
def test_imports_only_lower_layers(module):
    if module not in LAYERS: pytest.fail(f'{module} is not in LAYERS')
    me = LAYERS.index(module)
    later = sorted(m for m in maskcls_imports(PKG / f'{module}.py') - LAZY - {module}
                   if m not in LAYERS or LAYERS.index(m) > me)
    assert not later, f'{module} imports {later}, which sit above it in LAYERS: move the shared piece down'


def test_inference_never_loads_training():
    code = ('import sys, maskcls.inference, maskcls.submission, maskcls.tta\n'
            "print(sorted(m for m in ('maskcls.train', 'maskcls.cv', 'maskcls.optim') if m in sys.modules))")
    r = python(code, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == '[]', f'inference loads the training loop: {r.stdout}'
