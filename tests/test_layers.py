"""Data flows one way: a module imports only modules whose notebooks come before its own (`ls nbs` reads as the
architecture, README "The course"), also inside functions; inference never loads the training loop."""
import ast, re

import pytest

from conftest import ROOT, python

PKG = ROOT / 'maskcls'
LAZY = {'__init__'}     # the public API maps names to every module, imported on first use


def notebook_of(py) -> str:
    "The notebook a module is exported from (its first `# %% ../nbs/NAME.ipynb` cell marker)."
    m = re.search(r'^# %% \.\./nbs/(\S+)\.ipynb', py.read_text(), re.M)
    assert m, f'{py} has no nbdev cell marker: is it exported from a notebook?'
    return m.group(1)


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


@pytest.mark.parametrize('module', MODULES)
def test_imports_only_earlier_notebooks(module):
    me = notebook_of(PKG / f'{module}.py')
    later = {m: notebook_of(PKG / f'{m}.py') for m in maskcls_imports(PKG / f'{module}.py') if m not in LAZY}
    later = {m: nb for m, nb in later.items() if nb >= me and m != module}
    assert not later, f'{module} ({me}) imports {later}: move the shared piece down, or the module up'


def test_inference_never_loads_training():
    code = ('import sys, maskcls.inference, maskcls.submission, maskcls.tta\n'
            "print(sorted(m for m in ('maskcls.train', 'maskcls.cv', 'maskcls.optim') if m in sys.modules))")
    r = python(code, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == '[]', f'inference loads the training loop: {r.stdout}'
