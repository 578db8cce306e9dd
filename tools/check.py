"""Repository checks that `make test` runs before the notebooks and pytest.

    python tools/check.py unchanged DIR -- CMD...   run CMD, fail if it changed any file under DIR
    python tools/check.py readme [--check]          render nbs/index.ipynb to README.md (or check it is in step)

nbdev's own README step needs quarto, which this project cannot install, so README.md is
rendered here from nbs/index.ipynb: markdown cells verbatim, code cells as fenced python
with their text outputs, `#| hide` cells left out and `#|` directives stripped.
"""
import argparse, hashlib, json, re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def snapshot(folder):
    "Map every file under `folder` to the hash of its bytes."
    return {p.relative_to(ROOT).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((ROOT / folder).rglob('*')) if p.is_file() and '__pycache__' not in p.parts}


def unchanged(folder, cmd):
    before = snapshot(folder)
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc: sys.exit(f'`{" ".join(cmd)}` failed with exit code {rc}')
    after = snapshot(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if changed:
        sys.exit(f'`{" ".join(cmd)}` changed {len(changed)} file(s) under {folder}/:\n  ' + '\n  '.join(changed)
                 + '\nThe notebooks are the source: edit them, run `make export`, and commit the result.')
    print(f'ok: `{Path(cmd[0]).name}` leaves {folder}/ unchanged ({len(after)} files)')


def _src(cell):
    src = cell['source']
    return ''.join(src) if isinstance(src, list) else src


def _outputs(cell):
    "Text outputs of a code cell (streams and plain-text results); images are left to the notebook."
    out = []
    for o in cell.get('outputs', []):
        if o.get('output_type') == 'stream': out.append(''.join(o['text']))
        elif 'data' in o and 'text/markdown' in o['data']: out.append(('md', ''.join(o['data']['text/markdown'])))
        elif 'data' in o and 'text/plain' in o['data']: out.append(''.join(o['data']['text/plain']))
    return out


def _links_from_root(md):
    "Links in nbs/index.ipynb are relative to nbs/ (as the site needs); README.md sits one folder up."
    return re.sub(r'\]\((?![a-z]+:|#|/)([^)\s]+)\)', r'](nbs/\1)', md)


def render_readme(nb_path):
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = []
    for cell in nb['cells']:
        src = _src(cell)
        if cell['cell_type'] == 'markdown':
            parts.append(_links_from_root(src.strip()))
        elif cell['cell_type'] == 'code':
            lines = src.splitlines()
            flags = [l for l in lines if l.startswith('#|')]
            if any(l.split()[1:2] == ['hide'] for l in flags): continue
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if code: parts.append(f'```python\n{code}\n```')
            for o in _outputs(cell):
                if isinstance(o, tuple): parts.append(o[1].strip())
                else: parts.append('```\n' + o.rstrip() + '\n```')
    parts.append('<!-- Generated from nbs/index.ipynb by `make export`: edit the notebook, not this file. -->')
    return '\n\n'.join(p for p in parts if p) + '\n'


def readme(check):
    text = render_readme(ROOT / 'nbs' / 'index.ipynb')
    target = ROOT / 'README.md'
    if check:
        if not target.exists() or target.read_text(encoding='utf-8') != text:
            sys.exit('README.md is out of step with nbs/index.ipynb: run `make export` (or '
                     '`python tools/check.py readme`) and commit README.md.')
        print('ok: README.md is in step with nbs/index.ipynb')
    else:
        target.write_text(text, encoding='utf-8')
        print('wrote README.md from nbs/index.ipynb')


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('unchanged'); u.add_argument('folder'); u.add_argument('command', nargs=argparse.REMAINDER)
    r = sub.add_parser('readme'); r.add_argument('--check', action='store_true')
    a = p.parse_args()
    if a.cmd == 'unchanged':
        cmd = a.command[1:] if a.command[:1] == ['--'] else a.command
        if not cmd: p.error('unchanged needs a command after --')
        unchanged(a.folder, cmd)
    else: readme(a.check)
