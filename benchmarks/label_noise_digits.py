"""Planted label noise in a real image set: does cleanlab's ranking find the moved images better than self-confidence?

scikit-learn ships `load_digits` (1,797 8x8 grey digit images, 10 classes). This script writes it as an ImageFolder
tree (32x32 PNG), moves 5% and 10% of the images into a wrong class folder (seed 0), runs a 5-fold `maskcls cv` with
the tiny model on each tree (8 and 20 epochs), and ranks the images with `maskcls.suspects.folder_suspects`:
cleanlab's label quality (normalized margin with class thresholds) against the plain self-confidence (probability of
the given class).
Prints precision at k (k = the number of planted errors) of both and of confident learning's flagged set, and writes
benchmarks/label_noise_digits.csv.

    python benchmarks/label_noise_digits.py [--work DIR] [--epochs 8,20]
"""
import argparse, os, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent


def write_digits(root: Path, noise: float, seed: int = 0) -> pd.DataFrame:
    "The digits as root/<digit>/<index>.png (32x32), `noise` of them in a wrong class folder; returns what moved."
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(seed)
    n = len(d.target)
    moved = rng.choice(n, int(round(noise * n)), replace=False)
    given = d.target.copy()
    for i in moved: given[i] = rng.choice([c for c in range(10) if c != d.target[i]])
    rows = []
    for i, (img, y, g) in enumerate(zip(d.images, d.target, given)):
        f = root / str(g) / f'{i:04d}.png'
        f.parent.mkdir(parents=True, exist_ok=True)
        if not f.exists():
            Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BILINEAR).save(f)
        rows.append(dict(path=str(f), true=int(y), given=int(g), moved=bool(y != g)))
    return pd.DataFrame(rows)


def run_cv(data: Path, out: Path, epochs: int, cache: Path):
    if (out / 'oof.csv').exists(): return
    cmd = ['maskcls', 'cv', '--data', str(data), '--out', str(out), '--folds', '5', '--model', 'tiny',
           '--img-size', '32', '32', '--epochs', str(epochs), '--batch-size', '64', '--hflip', '0', '--device', 'cpu',
           '--cache-dir', str(cache), '--no-tensorboard', '--top-k', '1', '--seed', '0', '--workers', '0']
    subprocess.run(cmd, check=True)


def precision_at_k(ranked_paths, moved: set, k: int) -> float:
    return len(set(ranked_paths[:k]) & moved) / k


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', type=Path, default=Path('/tmp/maskcls-digits'))
    ap.add_argument('--epochs', type=str, default='8,20', help='training epochs of the CV runs, comma-separated')
    ap.add_argument('--cv-only', action='store_true', help='run the CVs, do not score')
    a = ap.parse_args()
    rows = []
    for epochs, noise in ((e, n) for e in map(int, a.epochs.split(',')) for n in (0.05, 0.10)):
        data, cv = a.work / f'digits{int(noise * 100):02d}', a.work / f'cv{int(noise * 100):02d}_e{epochs}'
        truth = write_digits(data, noise)
        run_cv(data, cv, epochs, a.work / 'cache')
        if a.cv_only: continue
        from maskcls.rundir import read_oof
        from maskcls.suspects import folder_suspects
        oof, task = read_oof(cv)
        moved = {os.path.abspath(p) for p in truth.loc[truth['moved'], 'path']}
        k = len(moved)
        oof_f1 = pd.read_json(cv / 'oof_metrics.json', typ='series')['f1']
        for name, kw in (('cleanlab normalized margin', {}),
                         ('self-confidence', dict(method='self_confidence', adjust=False))):
            ranked, _ = folder_suspects(oof, task, **kw)
            paths = [os.path.abspath(p) for p in ranked['photo']]
            flagged = {os.path.abspath(p) for p in ranked.loc[ranked['issue'], 'photo']}
            rows.append(dict(noise=noise, images=len(oof), planted=k, epochs=epochs,
                             oof_f1_given_labels=round(float(oof_f1), 4),
                             ranking=name,
                             precision_at_k=round(precision_at_k(paths, moved, k), 4),
                             flagged=len(flagged), flagged_precision=round(len(flagged & moved) / max(len(flagged), 1), 4),
                             flagged_recall=round(len(flagged & moved) / k, 4)))
    if rows:
        t = pd.DataFrame(rows)
        t.to_csv(HERE / 'label_noise_digits.csv', index=False)
        print(t.to_string(index=False))


if __name__ == '__main__':
    sys.exit(main())
