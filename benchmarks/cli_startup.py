"""How fast `maskcls` starts: wall time and peak memory of `maskcls --help`, `maskcls synth --help` and
`maskcls train --help`, the median of --runs fresh processes each, against the targets of issue 18.

    python benchmarks/cli_startup.py                             # the maskcls on PYTHONPATH / installed
    python benchmarks/cli_startup.py --pythonpath /tmp/cli-before  # another checkout, e.g. main's, to compare

Run by hand, not in CI, and not as a timed test: the numbers depend on the machine and its load (another
process busy on the same cores slows every run). Each run starts a fresh Python that does what the `maskcls`
script does (`from maskcls.cli import main; main()`), so the time includes the interpreter's own start-up
(printed as `python` for reference). Peak memory is the child's maximum resident set size, from `os.wait4`.
Each line ends with the ratio to its target (below 1.0: met).
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

COMMANDS = (  # arguments, target seconds, target MB (None: no memory target)
    (['--help'], 1.0, 300),
    (['synth', '--help'], 1.0, 300),
    (['train', '--help'], 2.0, None),
)
MAIN = 'import sys; from maskcls.cli import main; sys.exit(main())'


def run_once(code: str, args: list, env: dict) -> tuple[float, float]:
    "Wall seconds and peak resident MB of one fresh `python -c code args`."
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, '-c', code, *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, cwd=tempfile.gettempdir())   # not a checkout's folder: -c imports from there
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors='replace'); p.stderr.close()
    if p.returncode != 0: raise SystemExit(f'maskcls {" ".join(args)} failed ({p.returncode}):\n{err}')
    return seconds, usage.ru_maxrss / 1024      # Linux reports kilobytes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=5, help='fresh processes per command; the median counts')
    ap.add_argument('--pythonpath', default=None, help='import maskcls from this checkout (default: as installed)')
    a = ap.parse_args(argv)
    env = dict(os.environ)
    if a.pythonpath: env['PYTHONPATH'] = os.path.abspath(a.pythonpath)
    where = subprocess.run([sys.executable, '-c', 'import maskcls, os; print(os.path.dirname(maskcls.__file__))'],
                           env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
    print(f'maskcls from {where}; median of {a.runs} runs; load average {os.getloadavg()[0]:.1f} '
          f'on {os.cpu_count()} CPUs')
    base = [run_once('pass', [], env) for _ in range(a.runs)]
    print(f"{'python':<22} {statistics.median(s for s, _ in base):6.2f} s {statistics.median(m for _, m in base):6.0f} MB"
          '   (an empty interpreter, for reference)')
    for args, t_s, t_mb in COMMANDS:
        runs = [run_once(MAIN, args, env) for _ in range(a.runs)]
        s, mb = statistics.median(x for x, _ in runs), statistics.median(m for _, m in runs)
        mem = f'{mb / t_mb:4.2f} of {t_mb} MB' if t_mb else 'no memory target'
        print(f"{'maskcls ' + ' '.join(args):<22} {s:6.2f} s {mb:6.0f} MB   ratio {s / t_s:4.2f} of {t_s:g} s, {mem}")


if __name__ == '__main__':
    main()
