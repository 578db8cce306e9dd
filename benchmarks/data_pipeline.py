"""Data pipeline benchmark: the baseline's per-image PIL + torchvision loading against maskcls's cache + batched
augmentation.

    python benchmarks/data_pipeline.py                            # 300 synthetic people (2,100 images), 128 x 96 output
    python benchmarks/data_pipeline.py --people 60 --epochs 1 --repeats 1     # a quick look

Run by hand, not in CI. Both pipelines do the same work per image: decode (baseline) or read the cache (maskcls),
resize to --size, horizontal flip (p=0.5), rotation within +-30 degrees, colour jitter (brightness, contrast,
saturation 0.2, hue 0.05) and normalisation, in batches of --bs. The baseline runs in a torch DataLoader with
--workers worker processes; maskcls runs in its loader's threads on the CPU. Each pipeline is measured in its own
fresh process (so that its peak memory is its own), over --epochs epochs after one warm-up epoch; the two
alternate --repeats times and the best run of each counts (other load on the machine only ever slows a run).
Where CUDA is available it also measures 384 x 512 images cached at 256 x 192 with the full augmentation set on
the GPU. The last line is `speedup: X.X` (maskcls images/s over baseline images/s, measured in the same run).
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STEMS = ['mask1', 'mask2', 'mask3', 'mask4', 'mask5', 'incorrect_mask', 'normal']


def make_data(root: Path, people: int, seed: int = 0) -> str:
    "A synthetic competition train/ folder under `root`; which generator made it."
    try:
        from maskcls.synth import make_dataset
    except ImportError:
        make_dataset = None
    if make_dataset is not None:
        make_dataset(root, people=people, eval_people=0, seed=seed, progress=False)
        return 'maskcls.synth.make_dataset'
    from PIL import Image   # stand-in until maskcls.synth exists: smooth random 384 x 512 JPEGs in the same layout
    rng = np.random.default_rng(seed)
    for i in range(people):
        folder = root / 'train' / 'images' / f'{i:06d}_{"female" if i % 3 else "male"}_Asian_{20 + i % 41}'
        folder.mkdir(parents=True, exist_ok=True)
        for stem in STEMS:
            small = rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)
            Image.fromarray(small).resize((384, 512), Image.BICUBIC).save(folder / f'{stem}.jpg', quality=90)
    return 'stand-in random JPEGs (maskcls.synth not found)'


def image_paths(root: Path) -> list:
    files = (root / 'train' / 'images').rglob('*')
    return sorted(str(p) for p in files if p.suffix.lower() in ('.jpg', '.jpeg', '.png') and not p.name.startswith('._'))


def peak_mb() -> dict:
    "Peak resident memory (MB) of this process and of its largest finished child (DataLoader workers)."
    self_ = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(peak_mb=round(self_ / 1024, 1), peak_child_mb=round(kids / 1024, 1))


def timed_epochs(loader_fn, n_images: int, epochs: int, sync=lambda: None) -> float:
    "Images/s over `epochs` passes of `loader_fn()` after one warm-up pass."
    for _ in loader_fn(): pass
    sync(); t0 = time.perf_counter(); n = 0
    for _ in range(epochs):
        for xb, yb in loader_fn(): n += len(xb)
    sync()
    return n / (time.perf_counter() - t0)


def part_baseline(args) -> dict:
    "(a) PIL decode + torchvision transforms per image, in a DataLoader with worker processes."
    import torch
    from PIL import Image
    from torchvision.transforms import v2
    paths = image_paths(Path(args.data))
    tfm = v2.Compose([v2.Resize(tuple(args.size)), v2.RandomHorizontalFlip(), v2.RandomRotation(30),
                      v2.ColorJitter(0.2, 0.2, 0.2, 0.05), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(MEAN, STD)])

    class Images(torch.utils.data.Dataset):
        def __len__(self): return len(paths)
        def __getitem__(self, i):
            with Image.open(paths[i]) as im: return tfm(im.convert('RGB')), i % 18

    dl = torch.utils.data.DataLoader(Images(), batch_size=args.bs, shuffle=True, num_workers=args.workers,
                                     persistent_workers=args.workers > 0, drop_last=True)
    ips = timed_epochs(lambda: dl, len(paths), args.epochs)
    return dict(images_per_s=round(ips, 1), **peak_mb())


def part_maskcls(args) -> dict:
    "(b) decode once into the cache, then batched augmentation on the CPU."
    from maskcls.cache import build_cache
    from maskcls.augment import Augment, Flip, Affine, ColorJitter
    from maskcls.loader import Loader
    import pandas as pd
    paths = image_paths(Path(args.data))
    df = pd.DataFrame(dict(path=paths, label=np.arange(len(paths)) % 18))
    t0 = time.perf_counter()
    cache = build_cache(df.path, Path(args.data) / f'cache-{os.getpid()}', size=tuple(args.size), workers=args.workers,
                        progress=False)
    build_s = time.perf_counter() - t0
    tfm = Augment(Flip(p=0.5), Affine(p=1.0, degrees=30, translate=0.0, scale=(1.0, 1.0)),
                  ColorJitter(p=1.0, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05), seed=0)
    dl = Loader(df, cache, bs=args.bs, train=True, tfm=tfm, device='cpu', seed=0, workers=args.threads or None,
                tune_memory=True)
    ips = timed_epochs(lambda: dl, len(paths), args.epochs)
    return dict(images_per_s=round(ips, 1), cache_build_s=round(build_s, 2), cache_mb=round(cache.nbytes / 2**20, 1),
                loader_workers=dl.workers, **peak_mb())


def part_cuda(args) -> dict:
    "(c) 384 x 512 images cached at 256 x 192, full augmentation set on the GPU."
    import torch
    from maskcls.cache import build_cache
    from maskcls.augment import full_augment
    from maskcls.loader import Loader
    import pandas as pd
    paths = image_paths(Path(args.data))
    df = pd.DataFrame(dict(path=paths, label=np.arange(len(paths)) % 18))
    t0 = time.perf_counter()
    cache = build_cache(df.path, Path(args.data) / f'cache-{os.getpid()}', size=(256, 192), workers=args.cuda_workers,
                        progress=False)
    build_s = time.perf_counter() - t0
    out = dict(cache_build_s=round(build_s, 2), cache_mb=round(cache.nbytes / 2**20, 1),
               gpu=torch.cuda.get_device_name())
    sync = torch.cuda.synchronize
    for preload in (True, False):
        dl = Loader(df, cache, bs=args.cuda_bs, train=True, tfm=full_augment(seed=0, n_classes=18), device='cuda', seed=0,
                    preload=preload)
        out[f'images_per_s_{"preloaded" if preload else "pinned"}'] = round(timed_epochs(lambda: dl, len(paths),
                                                                                         args.cuda_epochs, sync), 1)
    aug = full_augment(seed=0, n_classes=18)
    xb = torch.randint(0, 256, (args.cuda_bs, 3, 256, 192), dtype=torch.uint8, device='cuda')
    yb = torch.randint(0, 18, (args.cuda_bs,), device='cuda')
    for _ in range(3): aug(xb, yb)
    sync(); t0 = time.perf_counter()
    for _ in range(20): aug(xb, yb)
    sync()
    out['augment_only_images_per_s'] = round(20 * args.cuda_bs / (time.perf_counter() - t0), 1)
    out['gpu_peak_mb'] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return dict(out, **peak_mb())


def run_part(name: str, args, env: dict) -> dict:
    "Run one part in a fresh Python process; its result dict."
    cmd = [sys.executable, __file__, '--part', name, '--data', args.data, '--size', *map(str, args.size), '--bs',
           str(args.bs),
           '--workers', str(args.workers), '--epochs', str(args.epochs), '--threads', str(args.threads),
           '--cuda-bs', str(args.cuda_bs), '--cuda-epochs', str(args.cuda_epochs),
           '--cuda-workers', str(args.cuda_workers)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode: sys.exit(f'part {name} failed:\n{r.stderr[-4000:]}')
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--people', type=int, default=300, help='synthetic people (7 images each)')
    p.add_argument('--size', type=int, nargs=2, default=[128, 96], metavar=('H', 'W'), help='output size')
    p.add_argument('--bs', type=int, default=64, help='batch size of both pipelines')
    p.add_argument('--workers', type=int, default=2,
                   help='DataLoader workers of the baseline; processes building the cache')
    p.add_argument('--epochs', type=int, default=2, help='timed epochs (after one warm-up epoch)')
    p.add_argument('--repeats', type=int, default=2,
                   help='runs of each pipeline, alternating; the best of each is reported')
    p.add_argument('--threads', type=int, default=0,
                   help='loader threads for maskcls (0: the loader default, all cores up to 4)')
    p.add_argument('--malloc', choices=['tuned', 'default'], default='tuned',
                   help='tuned: keep freed memory in glibc malloc (MALLOC_TRIM/MMAP_THRESHOLD_) for both pipelines')
    p.add_argument('--cuda-bs', type=int, default=512); p.add_argument('--cuda-epochs', type=int, default=5)
    p.add_argument('--cuda-workers', type=int, default=0,
                   help='processes building the 256 x 192 cache (0: all cores, up to 8)')
    p.add_argument('--data', default='', help='existing data folder (default: a new temporary one)')
    p.add_argument('--json', default='', help='also write the measured numbers to this JSON file')
    p.add_argument('--part', choices=['baseline', 'maskcls', 'cuda'], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        args.cuda_workers = args.cuda_workers or None
        print(json.dumps(dict(baseline=part_baseline, maskcls=part_maskcls, cuda=part_cuda)[args.part](args))); return

    tmp = tempfile.TemporaryDirectory()
    if not args.data:
        args.data = tmp.name
        t0 = time.perf_counter(); how = make_data(Path(args.data), args.people)
        print(f'data: {len(image_paths(Path(args.data)))} images from {how} in {time.perf_counter() - t0:.1f} s')
    env = dict(os.environ,
               PYTHONPATH=str(Path(__file__).resolve().parent.parent) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    if args.malloc == 'tuned': env.update(MALLOC_TRIM_THRESHOLD_=str(2**30), MALLOC_MMAP_THRESHOLD_=str(32 * 2**20))
    print(f'cpu cores: {os.cpu_count()}, malloc: {args.malloc}, output {args.size[0]} x {args.size[1]}, batch '
          f'{args.bs}, '
          f'{args.epochs} timed epoch(s); other load on the machine makes these numbers noisy')
    runs = {'baseline': [], 'maskcls': []}
    for _ in range(args.repeats):                      # alternate, so that both see the same spells of load
        for name in runs: runs[name].append(run_part(name, args, env))
    a, b = (max(r, key=lambda d: d['images_per_s']) for r in runs.values())
    spread = {k: ', '.join(f'{d["images_per_s"]:,.0f}' for d in r) for k, r in runs.items()}
    print(f'(a) baseline PIL + torchvision, DataLoader with {args.workers} workers: {a["images_per_s"]:,.0f} images/s; '
          f'peak memory {a["peak_mb"]:.0f} MB main + {a["peak_child_mb"]:.0f} MB per worker '
          f'(runs: {spread["baseline"]})')
    print(f'(b) maskcls cache + batched augmentation (CPU, {b["loader_workers"]} loader threads): '
          f'{b["images_per_s"]:,.0f} images/s; '
          f'peak memory {b["peak_mb"]:.0f} MB (runs: {spread["maskcls"]})')
    print(f'    cache build: {b["cache_build_s"]:.1f} s with {args.workers} processes; cache on disk '
          f'{b["cache_mb"]:.1f} MB')
    import torch
    c = None
    if torch.cuda.is_available():
        c = run_part('cuda', args, env)
        print(f'(c) CUDA {c["gpu"]}, 384 x 512 -> 256 x 192, full augmentation, batch {args.cuda_bs}: '
              f'{c["images_per_s_preloaded"]:,.0f} images/s preloaded on the GPU, '
              f'{c["images_per_s_pinned"]:,.0f} from pinned memory, '
              f'augmentation alone {c["augment_only_images_per_s"]:,.0f}; cache build {c["cache_build_s"]:.1f} s, '
              f'{c["cache_mb"]:.0f} MB; GPU peak {c["gpu_peak_mb"]:.0f} MB')
    else: print('(c) CUDA: not available here')
    print(f'speedup: {b["images_per_s"] / a["images_per_s"]:.1f}')
    if args.json:
        Path(args.json).write_text(json.dumps(dict(baseline=a, maskcls=b, cuda=c, runs=runs, cpu_cores=os.cpu_count(),
                                                   size=args.size, bs=args.bs, workers=args.workers), indent=1))


if __name__ == '__main__': main()
