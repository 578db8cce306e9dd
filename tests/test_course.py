"""The course's shape (issue 19): lessons numbered in lecture order with no lettered inserts, each ending with
Questions, Exercises and Further research and nothing after, each with a solutions notebook, none much over
4,000 words, export cells at most about 35% of the lessons' code; engine notebooks apart in nbs/engine/."""
import importlib.util, json, re

import pytest

from conftest import ROOT

NBS = ROOT / 'nbs'
LESSONS = sorted(NBS.glob('[0-9]*.ipynb'))
END = ['## Questions', '## Exercises', '## Further research']

spec = importlib.util.spec_from_file_location('lessons_tool', ROOT / 'tools' / 'lessons.py')
lessons = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lessons)


def load(p): return json.loads(p.read_text(encoding='utf-8'))


def headings(nb): return [l.strip() for c in nb['cells'] if c['cell_type'] == 'markdown'
                          for l in ''.join(c['source']).splitlines() if l.startswith('## ')]


def test_lessons_numbered_one_to_n_without_inserts():
    nums = [p.name.split('_')[0] for p in LESSONS]
    assert all(re.fullmatch(r'\d\d', n) for n in nums), f'lettered or odd lesson numbers: {nums}'
    assert [int(n) for n in nums] == list(range(1, len(LESSONS) + 1)), f'gaps or repeats: {nums}'
    engine = sorted(p.name for p in (NBS / 'engine').glob('*.ipynb'))
    assert all(re.fullmatch(r'\d\d_[a-z_]+\.ipynb', n) for n in engine), engine


@pytest.mark.parametrize('path', LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_ends_with_questions_exercises_research(path):
    nb = load(path)
    assert headings(nb)[-3:] == END, f'{path.name} ends with {headings(nb)[-3:]}, not {END}'
    words, _, _ = lessons.counts(nb)
    assert words <= 4300, f'{path.name}: {words} words; a lesson is about 4,000 at most: split it'
    solutions = NBS / 'solutions' / f'{path.stem}_solutions.ipynb'
    assert solutions.exists(), f'{path.name} has exercises but no {solutions.relative_to(ROOT)}'
    exercises = [h for h in headings(load(solutions)) if h.startswith('## Exercise')]
    assert exercises, f'{solutions.name} solves no exercise'


def test_export_share_of_the_course():
    c = e = 0
    for p in LESSONS:
        _, code, exp = lessons.counts(load(p))
        c, e = c + code, e + exp
    assert e / c <= 0.36, f'export cells are {e / c:.0%} of the lessons code lines (at most about 35%)'


def test_cell_ids_unique():
    "nbformat renumbers a repeated cell id with a warning on every read (the site build, JupyterLab): none repeat."
    for p in sorted(NBS.rglob('*.ipynb')):
        ids = [c.get('id') for c in load(p)['cells']]
        assert len(ids) == len(set(ids)), f'{p.relative_to(ROOT)} repeats cell ids: run nbdev_clean after fixing them'
