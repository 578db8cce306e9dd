"""Pseudo-labelling on scikit-learn's digits, measured honestly (`maskcls.jobs.pseudo_halves`): does adding confident
pseudo-labels of half A of the unlabelled images help a model on half B, which no model saw?

The digits (1,797 8x8 grey images, 10 classes, shipped inside scikit-learn) are written as two ImageFolder trees
(32x32 PNG): a labelled one of 20% of the images (stratified, seed 0) and a pool of the other 80%, split by
`pseudo_halves` into half A (pseudo-labelled) and half B (scored). Tiny CNN, no flips. Writes
benchmarks/pseudo_digits.csv and prints the table.

    python benchmarks/pseudo_digits.py [--work DIR] [--epochs 15] [--seeds 0]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def write_split(work: Path, share: float = 0.2, seed: int = 0) -> tuple[Path, Path]:
    "The digits as work/labelled/<digit>/<i>.png (a stratified `share`) and work/pool/<digit>/<i>.png (the rest)."
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    idx = np.arange(len(d.target))
    lab, _ = train_test_split(idx, train_size=share, stratify=d.target, random_state=seed)
    lab = set(lab.tolist())
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        f = work / ('labelled' if i in lab else 'pool') / str(y) / f'{i:04d}.png'
        f.parent.mkdir(parents=True, exist_ok=True)
        if not f.exists():
            Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BILINEAR).save(f)
    return work / 'labelled', work / 'pool'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', type=Path, default=Path('/tmp/maskcls-digits-pseudo'))
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--seeds', type=str, default='0')
    ap.add_argument('--threshold', type=str, default='0.9')
    a = ap.parse_args()
    from maskcls.config import Config
    from maskcls.jobs import pseudo_halves
    labelled, pool = write_split(a.work)
    cfg = Config(data=str(labelled), model='tiny', img_size=(32, 32), epochs=a.epochs, batch_size=32, hflip=0.0,
                 cache_dir=str(a.work / 'cache'), tensorboard=False, top_k=1, device='cpu', workers=0)
    t = pseudo_halves(cfg, pool, a.threshold, seeds=tuple(int(s) for s in a.seeds.split(',')), work=a.work / 'runs')
    t = t.assign(epochs=a.epochs, threshold=a.threshold).round(4)
    t.to_csv(HERE / 'pseudo_digits.csv', index=False)
    print(t.to_string(index=False))


if __name__ == '__main__':
    main()
