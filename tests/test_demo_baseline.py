"""The regression check of the brief: `maskcls demo` with its defaults (seed 0, the pretrained start) reproduces the
eval table the README records. A refactor that changes this table has changed behaviour."""
import re

import pandas as pd
import pytest

from conftest import ROOT, run

TOL = 0.005   # the README rounds to 3 decimals; float rounding on another CPU moves a score by a few thousandths


def readme_demo_table() -> pd.DataFrame:
    "The table under \"The demo's table\" in README.md, as numbers."
    text = (ROOT / 'README.md').read_text()
    block = text.split("The demo's table", 1)[1].split('\n\n', 2)[1]
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in block.splitlines() if line.startswith('|')]
    head, body = rows[0], [r for r in rows[2:]]
    t = pd.DataFrame([[float(x) for x in r[1:]] for r in body], index=[r[0] for r in body], columns=head[1:])
    return t


@pytest.mark.slow
def test_demo_reproduces_the_readme_table(tmp_path):
    r = run('demo', '--data', 'data', '--out', 'demo', '--cache-dir', 'cache', cwd=tmp_path, timeout=1200)
    got = pd.read_csv(tmp_path / 'demo' / 'results.csv', index_col=0)
    want = readme_demo_table()
    assert len(got) == len(want) == 3, (got, want)
    cols = {'macro F1': 'macro F1', 'accuracy': 'accuracy', 'mask F1': 'f1_mask', 'gender F1': 'f1_gender',
            'age F1': 'f1_age'}
    for (name, w), (_, g) in zip(want.iterrows(), got.iterrows()):
        for c, gc in cols.items():
            assert abs(g[gc] - w[c]) <= TOL, f'{name}, {c}: demo {g[gc]:.4f}, README {w[c]:.3f}\n{r.stdout}'
    assert re.sub(r'\s+', ' ', got.index[0]).startswith('single fold')
