"""One GPU check: every GPU number the README promises, from one command, written to disk stage by stage.

    python benchmarks/gpu_check.py --out gpu_check                # on a GPU machine, within --budget 450 seconds
    python benchmarks/gpu_check.py --out /tmp/gpu_check --tiny    # every stage at tiny sizes on the CPU

Stages, in order, each in its own process (a crash or a hang costs that stage only):
  environment    GPU name and memory, driver, torch / CUDA / cuDNN versions, CPU cores, which packages import
  data_pipeline  benchmarks/data_pipeline.py at 256 x 192: augmented images/s from the cache on the GPU against the
                 baseline-style PIL + torchvision DataLoader with 16 workers, in the same run
  throughput     training images/s of resnet18 and resnet50 at 256 x 192 for bf16 x channels-last x torch.compile,
                 and the share of a training step spent waiting for maskcls's loader (bf16 + channels-last)
  cv             a competition-size synthetic set (2,700 people, 18,900 images, all cores), its 256 x 192 cache,
                 5-fold x 10-epoch resnet18 CV: wall time of each
  cuda_cells     the notebooks' `#| cuda` cells, run as `nbdev_test --flags cuda` would (nbdev is not needed)

After every stage `OUT/gpu_check.json` (replaced atomically, always valid JSON) and `OUT/gpu_check.md` hold every
finished stage; a stage cut off by the budget or killed keeps what it measured so far in `OUT/parts/<stage>.json`.
The budget (`--budget`, seconds) is shared out between the stages; a stage skips or shortens what would not fit
and says so in its notes. Wheels listed in benchmarks/gpu_wheels.txt (`make gpu-wheels` puts them in `.whl/`)
are unpacked into `WORK/site` for packages the machine lacks (`--work`, default OUT/work, holds the data sets and
caches: point it outside OUT where OUT is copied back). See benchmarks/README.md.
"""
import argparse, ast, codeop, contextlib, ctypes, importlib.metadata, importlib.util, io, json, os, platform, shutil
import signal, subprocess, sys, threading, time, traceback, zipfile
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
STAGES = ('environment', 'data_pipeline', 'throughput', 'cv', 'cuda_cells')
SHARE = dict(environment=0.02, data_pipeline=0.14, throughput=0.26, cv=0.38, cuda_cells=0.20)   # of the budget
GRACE = 10                          # seconds a stage may overrun its share (to write its results) before it is killed
PACKAGES = dict(numpy='numpy', pandas='pandas', sklearn='scikit-learn', scipy='scipy', matplotlib='matplotlib',
                tensorboard='tensorboard', tqdm='tqdm', yaml='PyYAML', jinja2='Jinja2', PIL='pillow', timm='timm',
                fastcore='fastcore', optuna='optuna', cleanlab='cleanlab', nbdev='nbdev', IPython='ipython', ray='ray')


def _maskcls():
    """Every maskcls name this check uses but one, imported in one place (none imports optuna, cleanlab or
    fastcore); `maskcls.cv.run_cv` is imported where the CV stage needs it, as it imports fastcore."""
    from maskcls.synth import make_dataset
    from maskcls.layout import read_train
    from maskcls.config import Config
    from maskcls.cache import build_cache
    from maskcls.loader import Loader
    from maskcls.augment import full_augment
    from maskcls.models import create_model
    return SimpleNamespace(make_dataset=make_dataset, read_train=read_train, Config=Config, build_cache=build_cache,
                           Loader=Loader, full_augment=full_augment, create_model=create_model)


def now() -> str: return datetime.now(timezone.utc).isoformat(timespec='seconds')


def write_json(path: Path, obj) -> None:
    "Write `obj` as JSON to `path` atomically: readers see the old file or the new one, never half of one."
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.{threading.get_ident()}.tmp')
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, default=str); f.flush(); os.fsync(f.fileno())
    os.replace(tmp, path)


def die_with_parent() -> None:
    "Linux: this process gets SIGKILL when its parent dies (a check killed at its time limit leaves nothing behind)."
    with contextlib.suppress(Exception): ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def run_group(cmd, timeout: float, **kw) -> subprocess.CompletedProcess:
    "`subprocess.run` in a process group of its own, the whole group killed at `timeout` (TimeoutExpired raised)."
    with subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent, **kw) as p:
        try: out, err = p.communicate(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL); p.communicate(); raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


# ------------------------------------------------------------------------------------------------ the stages' side
class Stage:
    "One stage's results so far, saved to `out/parts/<name>.json` after every measurement."
    def __init__(self, args):
        self.name, self.out, self.tiny, self.until = args.stage, Path(args.out), args.tiny, args.until
        self.file, self.work = self.out / 'parts' / f'{self.name}.json', Path(args.work)
        self.results, self.notes, self.lock = {}, [], threading.RLock()   # the CV's fold watcher saves too
        self.cuda, self.device, self.sync = False, 'cpu', lambda: None
        if self.name != 'cuda_cells':                  # the notebooks' own processes import torch
            import torch
            self.cuda = torch.cuda.is_available() and not self.tiny
            self.device = 'cuda' if self.cuda else 'cpu'
            if self.cuda: self.sync = torch.cuda.synchronize
    def left(self) -> float: return self.until - time.time()
    def save(self):
        with self.lock: write_json(self.file, dict(results=self.results, notes=self.notes))
    def put(self, key, value):
        self.results[key] = value; self.save()
    def note(self, text: str):
        self.notes.append(text); print(text, flush=True); self.save()


def stage_environment(st: Stage):
    import torch, torchvision
    r = dict(python=platform.python_version(), platform=platform.platform(), cpu_cores=os.cpu_count(),
             memory_gb=round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30, 1),
             torch=torch.__version__, torchvision=torchvision.__version__, cuda_runtime=torch.version.cuda,
             cudnn=torch.backends.cudnn.version(), cuda_available=torch.cuda.is_available(),
             c_compiler=shutil.which('cc') or shutil.which('gcc'))
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        r.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), gpus=torch.cuda.device_count(),
                 capability=f'{p.major}.{p.minor}', bf16=torch.cuda.is_bf16_supported())
        with contextlib.suppress(Exception):
            r['driver'] = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                         capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    r['packages'] = {m: _version(m, d) for m, d in PACKAGES.items()}
    with contextlib.suppress(Exception):
        r['commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                                     text=True, timeout=10).stdout.strip() or None
    st.results.update(r); st.save()


def _has(module: str) -> bool:
    "Can `module` be imported here? (Found without importing it.)"
    try: return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError): return False


def _version(module: str, dist: str):
    "The installed version of `dist` (found without importing it), None when `module` is not importable."
    if not _has(module): return None
    try: return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError: return 'found, version unknown'


def _make_synth(st: Stage, root: Path, people: int) -> float:
    "A synthetic competition train/ folder of `people` people under `root` (all cores); seconds it took."
    mc = _maskcls()
    t0 = time.perf_counter()
    if not (root / 'train').exists():
        mc.make_dataset(root, people=people, eval_people=0, seed=0, workers=1 if st.tiny else os.cpu_count(),
                        progress=False)
    return round(time.perf_counter() - t0, 2)


def _image_df(root: Path):
    import numpy as np, pandas as pd
    files = (root / 'train' / 'images').rglob('*')
    paths = sorted(str(p) for p in files if p.suffix.lower() in ('.jpg', '.jpeg', '.png') and not p.name[0] in '._')
    return pd.DataFrame(dict(path=paths, label=np.arange(len(paths)) % 18))


def stage_data_pipeline(st: Stage):
    people = 6 if st.tiny else 300
    data = st.work / 'pipe_data'
    st.put('synth_s', _make_synth(st, data, people))
    size, workers = ([64, 48], 2) if st.tiny else ([256, 192], 16)
    cmd = [sys.executable, str(ROOT / 'benchmarks' / 'data_pipeline.py'), '--data', str(data), '--size', *map(str, size),
           '--workers', str(workers), '--epochs', '1' if st.tiny else '2', '--repeats', '1',
           '--json', str(st.work / 'data_pipeline.json')]
    if st.tiny: cmd += ['--bs', '8']
    st.put('command', ' '.join(cmd[1:]).replace(str(ROOT) + '/', ''))
    r = run_group(cmd, st.left(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    print(r.stdout[-3000:], r.stderr[-3000:], flush=True)
    if r.returncode: raise RuntimeError(f'data_pipeline.py failed: {r.stderr[-1500:]}')
    m = json.loads((st.work / 'data_pipeline.json').read_text())
    a, b, c = m['baseline'], m['maskcls'], m['cuda']
    st.results.update(images=len(_image_df(data)), size=f'{size[0]} x {size[1]}',
                      baseline_images_per_s=a['images_per_s'], baseline_workers=workers,
                      maskcls_cpu_images_per_s=b['images_per_s'],
                      cpu_speedup=round(b['images_per_s'] / a['images_per_s'], 2), cache_build_s=b['cache_build_s'])
    if c:
        st.results.update(gpu_preloaded_images_per_s=c['images_per_s_preloaded'],
                          gpu_pinned_images_per_s=c['images_per_s_pinned'],
                          gpu_augment_only_images_per_s=c['augment_only_images_per_s'],
                          gpu_speedup=round(c['images_per_s_preloaded'] / a['images_per_s'], 2),
                          gpu_peak_mb=c['gpu_peak_mb'])
    else: st.notes.append('no CUDA here: the GPU part of data_pipeline.py did not run')
    st.save()


def _step_fn(st: Stage, model, opt, bf16: bool):
    import torch, torch.nn.functional as F
    def step(xb, yb):
        with torch.autocast(st.device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(xb).float(), yb)     # yb: class indices or (mixed) class probabilities
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def _throughput(st: Stage, name, bf16, cl, comp, size, bs, warm, steps) -> dict:
    "Training images/s of `name` on one repeated device batch (no data loading)."
    import torch
    mc = _maskcls()
    torch.manual_seed(0)
    if comp: torch._dynamo.reset()
    model = mc.create_model(name).to(st.device)
    if cl: model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = torch.compile(model, backend='eager' if st.tiny else 'inductor') if comp else model
    step = _step_fn(st, run, opt, bf16)
    xb = torch.randn(bs, 3, *size, device=st.device); yb = torch.randint(0, 18, (bs,), device=st.device)
    if cl: xb = xb.contiguous(memory_format=torch.channels_last)
    if st.cuda: torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter(); step(xb, yb); st.sync(); first = time.perf_counter() - t0
    for _ in range(warm): step(xb, yb)
    st.sync(); t0 = time.perf_counter()
    for _ in range(steps): step(xb, yb)
    st.sync()
    r = dict(images_per_s=round(steps * bs / (time.perf_counter() - t0), 1), first_step_s=round(first, 2))
    if st.cuda: r['peak_mb'] = round(torch.cuda.max_memory_allocated() / 2**20)
    del model, opt, run
    if st.cuda: torch.cuda.empty_cache()
    return r


def _data_wait(st: Stage, name, size, bs, steps, preload: bool) -> dict:
    "`name` (resnet18), bf16 + channels-last, fed by maskcls's loader (full augmentation on the device) from a cache."
    import torch
    mc = _maskcls()
    data = st.work / 'pipe_data'
    _make_synth(st, data, 6 if st.tiny else 300)
    df = _image_df(data)
    cache = mc.build_cache(df.path, st.work / 'pipe_cache', size=tuple(size), workers=None, progress=False)
    torch.manual_seed(0)
    model = mc.create_model(name).to(st.device).to(memory_format=torch.channels_last)
    step = _step_fn(st, model, torch.optim.AdamW(model.parameters(), lr=1e-3), True)
    dl = mc.Loader(df, cache, bs=bs, train=True, tfm=mc.full_augment(seed=0, n_classes=18), device=st.device, seed=0,
                   preload=preload)
    def batches():
        while True: yield from dl
    it = batches()
    for _ in range(2): step(*next(it))                                 # warm-up
    st.sync(); t0 = time.perf_counter()
    for _ in range(steps): step(*next(it))                             # as in training: no synchronisation per step
    st.sync(); ips = steps * bs / (time.perf_counter() - t0)
    wait = total = 0.
    for _ in range(steps):                                             # per step: time until the batch is ready
        t0 = time.perf_counter(); xb, yb = next(it); st.sync(); t1 = time.perf_counter()
        step(xb, yb); st.sync(); wait += t1 - t0; total += time.perf_counter() - t0
    return dict(loader_images_per_s=round(ips, 1), serial_wait_share=round(wait / total, 4), images=len(df),
                preload=preload)


def stage_throughput(st: Stage):
    size, bs, warm, steps = ((32, 24), 4, 1, 2) if st.tiny else ((256, 192), 256, 3, 20)
    small, big = ('tiny', 'tiny') if st.tiny else ('resnet18', 'resnet50')
    combos = [(b, c) for b in (True, False) for c in (True, False)]
    jobs = ([(small, b, c, False) for b, c in combos] + [('wait',)] + [(small, True, True, True)]
            + [(big, b, c, False) for b, c in combos] + [(small, b, c, True) for b, c in combos[1:]]
            + [(big, True, True, True)] + [(big, b, c, True) for b, c in combos[1:]])
    if small == big: jobs = list(dict.fromkeys(jobs))                   # --tiny: one model
    est = {(small, False): 5, (big, False): 10, (small, True): 75, (big, True): 150}   # seconds, guesses
    if st.tiny:
        est = {k: 0 for k in est}
        st.note("--tiny: maskcls's tiny CNN stands in for resnet18 and resnet50")
    st.results.update(size=f'{size[0]} x {size[1]}', batch=bs, timed_steps=steps, rows=[])
    if st.tiny: st.note('--tiny: torch.compile uses the eager backend (dynamo only; inductor takes minutes on a CPU)')
    eager_bf16_cl = None
    for job in jobs:
        if job[0] == 'wait':
            if st.left() < (5 if st.tiny else 30): st.note('data wait: skipped, the stage budget is spent'); continue
            w = dict(model=small, bf16=True, channels_last=True)
            for preload in ((False, True) if st.cuda else (False,)):
                try: w[f'preload_{preload}'] = _data_wait(st, small, size, bs, steps * 2, preload)
                except Exception as e: w[f'preload_{preload}'] = dict(error=f'{type(e).__name__}: {e}')
            if eager_bf16_cl:
                for k in [k for k in w if k.startswith('preload')]:
                    if 'loader_images_per_s' in w[k]:
                        w[k]['data_wait_share'] = round(max(0., 1 - w[k]['loader_images_per_s'] / eager_bf16_cl), 4)
            st.put('data_wait', w); continue
        name, bf16, cl, comp = job
        row = dict(model=name, bf16=bf16, channels_last=cl, compile=comp)
        need = est[(name, comp)]
        if st.left() < need + 5:
            row['skipped'] = f'needs about {need:.0f} s, {max(st.left(), 0):.0f} s left in the stage'
        else:
            try: row.update(_throughput(st, name, bf16, cl, comp, size, bs, warm, steps))
            except Exception as e: row['error'] = f'{type(e).__name__}: {str(e)[:300]}'
            if comp and 'first_step_s' in row:                          # the first step compiles: learn its cost
                for k in ((name, True),) + (((big, True),) if name == small else ()):
                    est[k] = max(est[k] if k[0] != name else 0, row['first_step_s'] * (2 if k[0] != name else 1.2))
            if (name, bf16, cl, comp) == (small, True, True, False): eager_bf16_cl = row.get('images_per_s')
        st.results['rows'].append(row); st.save()


def stage_cv(st: Stage):
    mc = _maskcls()
    people, folds, epochs = (12, 2, 1) if st.tiny else (2700, 5, 10)
    data, out = st.work / 'comp_data', st.work / 'comp_cv'
    cfg = mc.Config(data=str(data), model='tiny' if st.tiny else 'resnet18', img_size=(32, 24) if st.tiny else (256, 192),
                    epochs=epochs, folds=folds, batch_size=16 if st.tiny else 128, lr=1e-3,
                    cache_dir=str(st.work / 'comp_cache'), tensorboard=False, device=st.device)
    st.results.update(people=people, folds=folds, epochs=epochs, model=cfg.model,
                      size=f'{cfg.img_size[0]} x {cfg.img_size[1]}', batch=cfg.batch_size, seconds={})
    t0 = time.time()
    st.results['seconds']['synth'] = _make_synth(st, data, people); st.save()
    df = mc.read_train(data)
    st.results['images'] = len(df)
    t1 = time.perf_counter()
    mc.build_cache(df.path, cfg.cache_dir, cfg.img_size, workers=None, progress=False)
    st.results['seconds']['cache'] = round(time.perf_counter() - t1, 2); st.save()
    tp = _load_parts(st.out, 'throughput').get('rows', [])
    ips = next((r.get('images_per_s') for r in tp if (r['model'], r['bf16'], r['channels_last'], r['compile'])
                == ('resnet18', True, True, False)), None)
    if ips and not st.tiny:            # train 4/5 of the images, validate 1/5 (at about 3x the training speed)
        per_epoch = len(df) * (folds - 1) / folds / ips * 1.3 + len(df) / folds / (3 * ips)
        fit = int((st.left() - 10 * folds - 10) / (folds * per_epoch))
        st.results['estimated_s'] = round(folds * (epochs * per_epoch + 10), 1)
        if fit < 1: st.note(f'CV skipped: even 1 epoch per fold needs about {folds * (per_epoch + 10):.0f} s, '
                            f'{st.left():.0f} s left'); return
        if fit < epochs:
            st.note(f'CV shortened to {fit} epochs per fold: {epochs} would need about '
                    f'{st.results["estimated_s"]:.0f} s, {st.left():.0f} s left')
            epochs = fit
            from dataclasses import replace
            cfg = replace(cfg, epochs=epochs); st.put('epochs', epochs)
    st.results['seconds']['folds'] = []
    start, stop = time.time(), threading.Event()
    def watch():                                   # record each fold's end as its done.json appears
        while not stop.wait(1): _fold_times(st, out, start)
    threading.Thread(target=watch, daemon=True).start()
    from maskcls.cv import run_cv                  # imports maskcls.train, which imports fastcore (a wheel travels)
    res = run_cv(cfg, df, out, progress=False)
    stop.set(); _fold_times(st, out, start)
    with st.lock:
        st.results['seconds']['cv'] = round(time.time() - start, 2)
        st.results['seconds']['total'] = round(time.time() - t0, 2)
        st.results['oof_macro_f1'] = round(float(res['f1']), 4)
        st.save()


def _fold_times(st: Stage, out: Path, start: float):
    ends = sorted(p.stat().st_mtime for p in out.glob('**/fold*/done.json'))
    secs = [round(e - s, 2) for s, e in zip([start] + ends, ends)]
    with st.lock:
        if secs != st.results['seconds'].get('folds'):
            st.results['seconds']['folds'] = secs; st.save()


# the notebooks' flagged cells, run as `nbdev_test --flags cuda` does (cells flagged with any other of settings.ini's
# tst_flags are skipped, as are `#| eval: false` cells), in a process whose working folder is the notebook's
TST_FLAGS = ('notest', 'slow', 'cuda')
NB_COST = {'07_augment': 40, '08_loader': 45, '08_tta': 60, '06_training': 150, '12_hpo': 400}   # seconds, guesses


def directives(src: str) -> dict:
    "The `#| key value` lines at the top of a cell, as nbdev reads them: {'cuda': [], 'eval:': ['false']}."
    d = {}
    for line in src.splitlines():
        if not line.strip(): continue
        if not line.startswith('#|'): break
        words = line[2:].split()
        if words: d[words[0]] = words[1:]
    return d


def _cells(nb_path: Path, flags) -> list:
    "(index, source, flags it carries) of each code cell that `nbdev_test --flags <flags>` runs."
    skip = set(TST_FLAGS) - set(flags)
    out = []
    for i, c in enumerate(json.loads(Path(nb_path).read_text())['cells']):
        if c['cell_type'] != 'code': continue
        src = ''.join(c['source']) if isinstance(c['source'], list) else c['source']
        d = directives(src)
        if 'nbdev_export' + '(' in src or (d.get('eval:') or [''])[0].lower() == 'false' or skip & d.keys(): continue
        out.append((i, src, [f for f in flags if f in d]))
    return out


def _needs(cells) -> list:
    "Top-level modules the cells import at their top level that are not importable here."
    mods = set()
    for _, src, _ in cells:
        try: tree = ast.parse(src)
        except SyntaxError: continue
        for node in tree.body:
            if isinstance(node, ast.Import): mods |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level: mods.add(node.module.split('.')[0])
    return sorted(m for m in mods if m != '__future__' and not _has(m))


class _Tee(io.StringIO):
    def __init__(self, stream): super().__init__(); self.stream = stream
    def write(self, s): self.stream.write(s); return super().write(s)


def run_notebook(nb_path: Path, flags, report: Path) -> int:
    "Run a notebook's cells as `nbdev_test --flags` does; write each flagged cell's result to `report` as it ends."
    nb_path = Path(nb_path).resolve()
    os.chdir(nb_path.parent); os.environ['IN_TEST'] = '1'
    sys.argv = [str(nb_path)]
    ns, comp, rows = {'__name__': '__main__'}, codeop.Compile(), []      # codeop keeps `from __future__` across cells
    for i, src, flagged in _cells(nb_path, flags):
        t0, buf = time.perf_counter(), _Tee(sys.stdout)
        try:
            with contextlib.redirect_stdout(buf): exec(comp(src, f'{nb_path.name} cell {i}', 'exec'), ns)
        except BaseException as e:
            tb = traceback.format_exc(limit=-3)
            print(tb, file=sys.stderr)
            rows.append(dict(cell=i, flags=flagged, status='failed', seconds=round(time.perf_counter() - t0, 2),
                             first_line=_first(src), error=f'{type(e).__name__}: {str(e)[:500]}', traceback=tb[-1500:]))
            write_json(report, rows); return 1
        if flagged:
            rows.append(dict(cell=i, flags=flagged, status='passed', seconds=round(time.perf_counter() - t0, 2),
                             first_line=_first(src), output=buf.getvalue()[-800:]))
            write_json(report, rows)
    write_json(report, rows); return 0


def _first(src: str) -> str: return next((ln for ln in src.splitlines() if not ln.startswith('#|')), '')[:120]


def _toy_notebook(path: Path):
    "A notebook that shows the runner's flag handling: its slow, notest and `eval: false` cells would fail if run."
    cells = ['import os\nx = 1', "#| slow\nraise RuntimeError('a slow cell ran')",
             "#| notest\nraise RuntimeError('a notest cell ran')",
             "#| cuda\nassert x == 1 and os.environ['IN_TEST'] == '1'\nprint('the cuda cell ran')",
             "#| eval: false\nraise RuntimeError('an eval: false cell ran')", 'x += 1',
             "#| cuda\nassert x == 2\nprint('the second cuda cell ran')"]
    nb = dict(cells=[dict(cell_type='code', source=s, metadata={}, outputs=[], execution_count=None) for s in cells],
              metadata={}, nbformat=4, nbformat_minor=5)
    path.parent.mkdir(parents=True, exist_ok=True); path.write_text(json.dumps(nb))


def _notebooks() -> dict:
    "Every notebook under nbs/ (course lessons, the engine's reference notebooks, solutions) by name."
    return {p.stem: p for p in sorted((ROOT / 'nbs').rglob('*.ipynb')) if '.ipynb_checkpoints' not in p.parts}


def stage_cuda_cells(st: Stage):
    paths = _notebooks()
    found = {k: sum(bool(f) for _, _, f in _cells(p, ['cuda'])) for k, p in paths.items()}
    found = {k: v for k, v in found.items() if v}
    st.results['found'] = found
    st.put('missing', {k: m for k in found if (m := _needs(_cells(paths[k], ['cuda'])))})
    if st.tiny:
        toy = st.work / 'toy_nb' / 'toy.ipynb'; _toy_notebook(toy)
        todo = [toy]
        st.note(f'--tiny: runs a toy notebook instead of the {sum(found.values())} cuda cells (they need a GPU)')
    else: todo = sorted((paths[k] for k in found), key=lambda p: NB_COST.get(p.stem, 100))
    st.results['notebooks'] = {}
    for nb in todo:
        r = st.results['notebooks'][nb.stem] = {}
        missing = _needs(_cells(nb, ['cuda']))
        need = NB_COST.get(nb.stem, 100) if not st.tiny else 1
        if missing: r['skipped'] = f'needs {", ".join(missing)}, not installed here'
        elif st.left() < need:
            r['skipped'] = f'needs about {need} s, {max(st.left(), 0):.0f} s left in the stage'
        if 'skipped' in r: st.save(); continue
        report, t0 = st.work / 'cells' / f'{nb.stem}.json', time.perf_counter()
        env = dict(os.environ, MPLBACKEND='Agg')
        cmd = [sys.executable, __file__, '--run-notebook', str(nb), '--report', str(report), '--out', str(st.out)]
        try:
            p = run_group(cmd, st.left(), env=env)
            r['status'] = 'passed' if p.returncode == 0 else 'failed'
        except subprocess.TimeoutExpired: r['status'] = 'cut off at the stage budget'
        r['seconds'] = round(time.perf_counter() - t0, 1)
        r['cells'] = json.loads(report.read_text()) if report.exists() else []
        st.save()


# ------------------------------------------------------------------------------------------------ the driver's side
def _load_parts(out: Path, name: str) -> dict:
    try: return json.loads((out / 'parts' / f'{name}.json').read_text()).get('results', {})
    except (OSError, ValueError): return {}


def _unpack_wheels(work: Path, wheels: Path) -> tuple:
    "Unpack the wheels in `wheels` whose packages this Python lacks into work/site; (folder or None, wheels used)."
    used, site = [], work / 'site'
    for whl in sorted(Path(wheels).glob('*.whl')):
        with zipfile.ZipFile(whl) as z:
            tops = {n.split('/')[0] for n in z.namelist() if '.dist-info' not in n.split('/')[0]}
            tops = {t[:-3] if t.endswith('.py') else t for t in tops}
            if all(_has(t) for t in tops): continue
            z.extractall(site); used.append(whl.name)
    return (site if used else None), used


def _md(doc: dict) -> str:
    "The results as markdown: a section per stage, a table per list of rows."
    lines = [f"# GPU check {doc['started']}", '', f"budget {doc['budget_s']} s, tiny: {doc['tiny']}", '']
    for name in STAGES:
        s = doc['stages'].get(name)
        if not s: continue
        lines += [f"## {name}: {s['status']}" + (f", {s['seconds']} s" if 'seconds' in s else ''), '']
        lines += [f'- {n}' for n in s.get('notes', [])] + ([''] if s.get('notes') else [])
        if s.get('error'): lines += ['```', s['error'][-1500:], '```', '']
        flat, tables = {}, {}
        def walk(prefix, v):
            if isinstance(v, dict) and v and not (prefix.endswith('packages')):
                for k, x in v.items(): walk(f'{prefix}.{k}' if prefix else str(k), x)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v): tables[prefix] = v
            else: flat[prefix] = v
        walk('', s.get('results', {}))
        if flat: lines += ['| what | value |', '|---|---|'] + [f'| {k} | {_cell(v)} |' for k, v in flat.items()] + ['']
        for k, rows in tables.items():
            cols = list(dict.fromkeys(c for r in rows for c in r if c not in ('traceback', 'output')))
            lines += [f'{k}:', '', '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
            lines += ['| ' + ' | '.join(_cell(r.get(c, '')) for c in cols) + ' |' for r in rows] + ['']
    return '\n'.join(lines) + '\n'


def _cell(v) -> str:
    if isinstance(v, float): v = f'{v:,.4g}' if abs(v) < 1000 else f'{v:,.0f}'
    return str(v).replace('|', '/').replace('\n', ' ')


def drive(args) -> int:
    out = Path(args.out).resolve(); out.mkdir(parents=True, exist_ok=True)
    (out / 'parts').mkdir(exist_ok=True); (out / 'logs').mkdir(exist_ok=True)
    t_start = time.time()
    doc = dict(started=now(), command=' '.join(sys.argv), budget_s=args.budget, tiny=args.tiny, finished=None,
               stages={})
    work = Path(args.work or out / 'work').resolve()
    site, wheels = _unpack_wheels(work, args.wheels)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + ([str(site)] if site else [])
                                                      + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    if args.tiny: env.update(CUDA_VISIBLE_DEVICES='')
    doc['wheels_unpacked'] = wheels
    def save():
        write_json(out / 'gpu_check.json', doc)
        tmp = out / '.gpu_check.md.tmp'; tmp.write_text(_md(doc)); os.replace(tmp, out / 'gpu_check.md')
    save()
    spare = 0.                                              # unused seconds of the stages so far
    for name in STAGES:
        left = args.budget - (time.time() - t_start)
        share = min(SHARE[name] * args.budget + spare, left)
        if name == 'environment': share = max(share, 60 if not args.tiny else 30)     # it never takes long
        if share < 3:
            doc['stages'][name] = dict(status='skipped', notes=[f'budget spent ({max(left, 0):.0f} s left)'])
            save(); print(f'{name}: skipped, budget spent', flush=True); continue
        until = time.time() + share
        doc['stages'][name] = dict(status='running', started=now(), allotted_s=round(share, 1)); save()
        cmd = [sys.executable, __file__, '--stage', name, '--out', str(out), '--work', str(work), '--until', str(until)]
        if args.tiny: cmd.append('--tiny')
        t0 = time.time()
        with open(out / 'logs' / f'{name}.log', 'w') as log:
            p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=die_with_parent)
            doc['stages'][name]['pid'] = p.pid; save()
            try: rc = p.wait(timeout=share + GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL); p.wait(); rc = None
        secs = time.time() - t0
        spare = max(0., share - secs) if name != 'environment' else max(0., SHARE[name] * args.budget - secs)
        part = {}
        with contextlib.suppress(OSError, ValueError): part = json.loads((out / 'parts' / f'{name}.json').read_text())
        s = dict(status='done' if rc == 0 else 'failed' if rc else f'cut off after {share + GRACE:.0f} s',
                 seconds=round(secs, 1), allotted_s=round(share, 1), results=part.get('results', {}),
                 notes=part.get('notes', []))
        if rc:
            s['error'] = (out / 'logs' / f'{name}.log').read_text(errors='replace')[-2000:]
        doc['stages'][name] = s; save()
        print(f"{name}: {s['status']} in {secs:.1f} s", flush=True)
        if name == 'environment' and rc == 0 and not args.tiny and not s['results'].get('cuda_available'):
            doc['stages']['environment']['notes'].append('no CUDA GPU: the other stages need one (or --tiny)')
            doc['finished'] = now(); save()
            print('no CUDA GPU here: the check needs one; `--tiny` runs every stage at tiny sizes on the CPU')
            return 1
    doc['finished'] = now(); save()
    print(_md(doc))
    return 0 if all(s['status'] in ('done', 'skipped') for s in doc['stages'].values()) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, help='folder for gpu_check.json, gpu_check.md, parts/, logs/')
    p.add_argument('--work', type=Path, help='folder for the data sets, caches and CV runs (default OUT/work)')
    p.add_argument('--budget', type=float, help='seconds for the whole check, shared out by stage (default 450; '
                   '1500 with --tiny, whose stages are mostly process start-up, slow on a shared CPU)')
    p.add_argument('--tiny', action='store_true', help='every stage at tiny sizes on the CPU (tests the check)')
    p.add_argument('--wheels', type=Path, default=ROOT / '.whl', help='folder of wheels (`make gpu-wheels`)')
    p.add_argument('--stage', choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument('--until', type=float, help=argparse.SUPPRESS)
    p.add_argument('--run-notebook', help=argparse.SUPPRESS)
    p.add_argument('--report', help=argparse.SUPPRESS)
    args = p.parse_args()
    args.budget = args.budget or (1500 if args.tiny else 450)
    if args.run_notebook: sys.exit(run_notebook(Path(args.run_notebook), ['cuda'], Path(args.report)))
    if args.stage:
        st = Stage(args)
        st.save()
        globals()[f'stage_{args.stage}'](st)
        st.save(); return
    sys.exit(drive(args))


if __name__ == '__main__': main()
