"""The benchmark behind ``python -m longconv_edu bench``: every backend against torch.fft and scipy.fft.

For each backend from the registry (``dispatch.get_backend``) and each length L it reports

* the median time of ``backend(u, k)`` with u (B, H, L), k (H, L), B*H = --rows rows;
* the speedup over ``fft_conv`` (torch.fft) and over scipy.fft with ``workers=os.cpu_count()``,
  both timed *in the same process, interleaved call by call with the backend*, so a busy machine
  slows all three alike and the ratios stay meaningful when the seconds do not (the JSON keeps
  every sample, and also the ratio of the best samples, closest to an unshared machine);
* effective GFLOP/s: the nominal work of an FFT convolution divided by the time. We count two
  real transforms of size N = 2L per row (forward and inverse), each 2.5 N log2 N flops (half of
  the 5 N log2 N of a complex FFT of size N, the usual convention); the kernel's own transforms
  and the pointwise product are not counted. The same count is used for every backend, so the
  column is simply proportional to 1 / time (for the O(L^2) backends it is not their real work);
* peak memory: each backend runs in its own subprocess (unless --no-isolate); before the call the
  kernel's resident-set high-water mark is reset (``/proc/self/clear_refs``), and the peak is
  VmHWM after the call minus VmRSS before it: everything the call allocated at its worst moment,
  output included, inputs excluded. Where /proc is missing, the ru_maxrss increase is used;
* two roofs measured in the same run: matmul GFLOP/s (torch, 2048^2, the dtype of the run) and
  copy bandwidth (a 256 MiB tensor copy, bytes read + written per second).

A backend that cannot run here (no GPU, a missing package) is reported as skipped with the
error it raised. A pair (backend, L) is skipped, and says so, when its time would exceed
--time-limit seconds or its memory a quarter of the free memory: time is extrapolated from the
last length measured as L^p, p (between 1 and 2) fitted to the last two measurements (first two
short probe lengths), memory always as L^2. That is how the O(L^2) backends drop out early. Results: a table on stdout,
``NAME.json`` and ``NAME.png`` in --out.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .._checks import check_choice
from ..timing import time_call

DEFAULT_LENGTHS = (1024, 4096, 16384, 65536)
FLOP_MODEL = ("2 real FFTs of size N = 2L per row (forward + inverse), 2.5 N log2 N flops each "
              "(half of 5 N log2 N for a complex FFT); kernel transforms and the pointwise "
              "product not counted")
PROBE_L = 128      # probe lengths PROBE_L / 4 and PROBE_L estimate how time grows with L


# ============================================================================ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..dispatch import backends
    p.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), metavar="L",
                   help="sequence lengths (default: %(default)s)")
    p.add_argument("--rows", type=int, default=256, help="B*H rows per call (default: 256)")
    p.add_argument("--batch", type=int, default=2, help="B; H = rows / B (default: 2)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--backends", nargs="+", default=None, metavar="NAME",
                   help=f"backends to time (default: all registered: {', '.join(backends())})")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per (backend, L) (default: 5)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="skip a (backend, L) predicted to need longer than this (default: 60)")
    p.add_argument("--out", type=Path, default=Path("course/results/bench"),
                   help="folder for NAME.json and NAME.png (default: %(default)s)")
    p.add_argument("--name", default="bench", help="file name stem (default: bench)")
    p.add_argument("--no-isolate", action="store_true",
                   help="run every backend in this process (faster; memory figures can read low: "
                        "memory freed by an earlier call is reused without raising the RSS)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--seed", type=int, default=0)


def _fail(msg: str) -> int:
    print(f"python -m longconv_edu bench: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..dispatch import backends

    names = list(backends()) if args.backends is None else list(args.backends)
    try:
        for n in names:
            check_choice(n, "--backends", backends())
    except ValueError as e:
        return _fail(str(e))
    if not args.lengths or any(L < 1 for L in args.lengths):
        return _fail(f"--lengths must be integers >= 1, got {args.lengths}")
    if args.batch < 1 or args.rows < args.batch or args.rows % args.batch:
        return _fail(f"--rows must be a positive multiple of --batch = {args.batch}, got {args.rows}")
    if args.repeats < 1:
        return _fail(f"--repeats must be >= 1, got {args.repeats}")
    if not args.time_limit > 0:
        return _fail(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    report = benchmark(names, sorted(set(args.lengths)), rows=args.rows, batch=args.batch,
                       dtype=args.dtype, repeats=args.repeats, time_limit=args.time_limit,
                       isolate=not args.no_isolate, progress=not args.no_progress, seed=args.seed)
    report["command"] = (f"python -m longconv_edu bench --lengths {' '.join(map(str, args.lengths))}"
                         f" --rows {args.rows} --batch {args.batch} --dtype {args.dtype} --backends"
                         f" {' '.join(names)} --repeats {args.repeats} --time-limit {args.time_limit:g}"
                         + (" --no-isolate" if args.no_isolate else ""))
    print(format_table(report))
    paths = save(report, args.out, args.name)
    print("saved " + ", ".join(str(p) for p in paths))
    return 0


# ============================================================================ the measurement
def benchmark(names, lengths, *, rows=256, batch=2, dtype="float32", repeats=5, time_limit=60.0,
              isolate=True, progress=True, seed=0) -> dict:
    """Measure roofs, then each backend (in its own subprocess when isolate); return the report."""
    from tqdm.auto import tqdm

    cfg = dict(lengths=list(lengths), rows=rows, batch=batch, channels=rows // batch, dtype=dtype,
               repeats=repeats, time_limit=time_limit, seed=seed)
    report = {"started": _now(), "machine": machine_info(), "config": cfg,
              "flop_model": FLOP_MODEL, "memory_method": _memory_method(), "isolated": isolate}
    bar = tqdm(total=len(names) * len(lengths) + 1, desc="bench", disable=not progress)
    bar.set_postfix_str("roofs")
    report["roofs"] = measure_roofs(dtype)
    bar.update()
    results = []
    for name in names:
        bar.set_postfix_str(name)
        stream = _run_worker(name, cfg) if isolate else measure_backend(name, **cfg)
        for row in stream:
            results.append(row)
            bar.set_postfix_str(f"{name} L={row['L']} {row['status']}")
            bar.update()
    bar.close()
    report["results"] = results
    report["finished"] = _now()
    return report


def _run_worker(name: str, cfg: dict):
    """Run measure_backend(name) in a fresh Python and yield its rows as they arrive."""
    cmd = [sys.executable, "-m", "longconv_edu.lab.bench", json.dumps({"name": name, **cfg})]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryFile("w+") as errf:     # a file, so a chatty stderr cannot block it
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
        got = set()
        for line in proc.stdout:
            if line.startswith("{"):
                row = json.loads(line)
                got.add(row["L"])
                yield row
        proc.wait()
        errf.seek(0)
        err = errf.read()
    if proc.returncode != 0:
        reason = f"worker exited with code {proc.returncode}: {err.strip()[-300:]}"
        for L in cfg["lengths"]:
            if L not in got:
                yield _skipped(name, L, reason)


def _skipped(name, L, reason) -> dict:
    return {"backend": name, "L": L, "status": "skipped", "reason": reason}


def measure_backend(name, *, lengths, rows, batch, channels, dtype, repeats, time_limit, seed):
    """Yield one result row per L for backend ``name`` (timings, ratios, GFLOP/s, peak memory)."""
    import torch

    from ..conv import fft_conv
    from ..dispatch import get_backend

    fn = get_backend(name)
    tdtype = getattr(torch, dtype)
    B, H = batch, channels

    def inputs(L, b=B, h=H):
        g = torch.Generator().manual_seed(seed + L)
        return (torch.randn(b, h, L, generator=g, dtype=tdtype),
                torch.randn(h, L, generator=g, dtype=tdtype) / math.sqrt(L))

    try:                                     # can it run here at all? (also compiles JIT code)
        fn(*inputs(8, 1, 1))
    except Exception as e:                   # noqa: BLE001 - any failure means "not available"
        for L in lengths:
            yield _skipped(name, L, f"not available here: {type(e).__name__}: {e}")
        return
    # two probe lengths give a growth exponent (clamped to [1, 2]) for extrapolating the time;
    # memory is extrapolated as O(L^2) whatever the probes say (never risk running out)
    p0, p1 = min(PROBE_L // 4, min(lengths)), min(PROBE_L, min(lengths))
    m0, t0 = peak_call(fn, *inputs(p0))
    last_mem, last_t = peak_call(fn, *inputs(p1)) if p1 > p0 else (m0, t0)
    last_L = p1
    growth = _growth(p0, t0, p1, last_t)
    scipy_conv = _scipy_conv()
    for L in lengths:
        calls = repeats + 2
        t_pred = last_t * (L / last_L) ** growth * calls
        m_pred = last_mem * (L / last_L) ** 2
        if L > last_L and t_pred > time_limit:
            yield _skipped(name, L, f"would take ~{t_pred:.0f} s for {calls} calls (time "
                                    f"extrapolated as L^{growth:.1f} from L={last_L}); over "
                                    f"--time-limit {time_limit:g} s")
            continue
        if L > last_L and m_pred > 0.25 * _available_bytes():
            yield _skipped(name, L, f"would need ~{m_pred / 2**30:.1f} GiB (extrapolated as "
                                    f"L^2 from L={last_L}); over a quarter of free memory")
            continue
        u, k = inputs(L)
        try:
            peak, _ = peak_call(fn, u, k)
            un, kn = u.numpy(), k.numpy()
            fft_conv(u, k)
            scipy_conv(un, kn)
            t_b, t_f, t_s = [], [], []
            for _ in range(repeats):         # interleaved: the three see the same machine
                t_b.append(_timed(fn, u, k))
                t_f.append(_timed(fft_conv, u, k))
                t_s.append(_timed(scipy_conv, un, kn))
        except Exception as e:               # noqa: BLE001 - e.g. a length a backend refuses
            yield _skipped(name, L, f"{type(e).__name__}: {e}")
            continue
        sec, sec_f, sec_s = (statistics.median(t) for t in (t_b, t_f, t_s))
        out_bytes = u.numel() * u.element_size()
        yield {"backend": name, "L": L, "status": "ok", "seconds": sec, "seconds_all": t_b,
               "fft_seconds": sec_f, "scipy_seconds": sec_s,
               "fft_seconds_all": t_f, "scipy_seconds_all": t_s,
               "speedup_vs_fft": sec_f / sec, "speedup_vs_scipy": sec_s / sec,
               "best_speedup_vs_fft": min(t_f) / min(t_b),
               "best_speedup_vs_scipy": min(t_s) / min(t_b),
               "gflops": conv_flops(rows, L) / sec / 1e9, "peak_bytes": peak,
               "output_bytes": out_bytes, "peak_over_output": peak / out_bytes}
        if L > last_L:
            growth = _growth(last_L, last_t, L, sec)
        last_L, last_t, last_mem = L, sec, max(peak, 1)


def _growth(L0: int, t0: float, L1: int, t1: float) -> float:
    """The exponent p of t ~ L^p between two measurements, clamped to [1, 2]."""
    if L1 <= L0 or t0 <= 0 or t1 <= 0:
        return 2.0
    return min(2.0, max(1.0, math.log(t1 / t0) / math.log(L1 / L0)))


def conv_flops(rows: int, L: int) -> float:
    """Nominal flops of one FFT convolution call (see FLOP_MODEL)."""
    N = 2 * L
    return rows * 2 * 2.5 * N * math.log2(N)


def _timed(fn, *args) -> float:
    """Seconds of one call: a single sample, so the caller can interleave backends call by call."""
    return time_call(fn, *args, repeats=1, warmup=0)


def _scipy_conv():
    """The causal conv by scipy.fft with all cores: the strongest library peer on a CPU."""
    import numpy as np
    import scipy.fft as sf

    workers = os.cpu_count()

    def conv(u: np.ndarray, k: np.ndarray) -> np.ndarray:
        L = u.shape[-1]
        n = sf.next_fast_len(2 * L, real=True)
        y = sf.irfft(sf.rfft(u, n=n, workers=workers) * sf.rfft(k, n=n, workers=workers),
                     n=n, workers=workers)
        return y[..., :L]
    return conv


# ---------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_method() -> str:
    if _status_kib("VmHWM") is not None and _reset_peak():
        return ("per call: VmHWM after minus VmRSS before, after resetting the high-water mark "
                "with /proc/self/clear_refs (output and temporaries; inputs excluded)")
    return "per call: increase of getrusage ru_maxrss (a lower bound when an earlier peak was higher)"


def peak_call(fn, *args) -> tuple[int, float]:
    """(peak extra resident bytes during fn(*args), seconds) measured as in _memory_method."""
    gc.collect()
    proc = _status_kib("VmRSS") is not None and _reset_peak()
    before = _status_kib("VmRSS") if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = fn(*args)
    sec = time.perf_counter() - t0
    after = _status_kib("VmHWM") if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    return max(0, after - before) * 1024, sec


def _available_bytes() -> int:
    kib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
    except OSError:
        pass
    return (kib or 4 * 2**20) * 1024


# ---------------------------------------------------------------------------- roofs, machine
def measure_roofs(dtype: str = "float32") -> dict:
    """This machine's matmul GFLOP/s and copy bandwidth, measured now (median of 3)."""
    import torch

    td = getattr(torch, dtype)
    n = 2048
    a, b = torch.randn(n, n, dtype=td), torch.randn(n, n, dtype=td)
    a @ b
    mm = statistics.median(_timed(torch.matmul, a, b) for _ in range(3))
    del a, b
    src = torch.ones(64 * 2**20 // (2 if td == torch.float64 else 1), dtype=td)
    dst = torch.empty_like(src)
    dst.copy_(src)
    cp = statistics.median(_timed(dst.copy_, src) for _ in range(3))
    nbytes = src.numel() * src.element_size()
    return {"matmul_gflops": 2 * n**3 / mm / 1e9, "matmul_size": n,
            "copy_gbytes_per_s": 2 * nbytes / cp / 1e9, "copy_bytes": nbytes}


def machine_info() -> dict:
    import numba
    import numpy
    import scipy
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__, "scipy": scipy.__version__,
            "numba": numba.__version__, "platform": platform.platform()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ============================================================================ output
def format_table(report: dict) -> str:
    """The results as a fixed-width text table (skipped pairs listed under it with the reason)."""
    r = report["roofs"]
    lines = [f"roofs: matmul {r['matmul_gflops']:.0f} GFLOP/s, copy {r['copy_gbytes_per_s']:.1f} GB/s"
             f"  ({report['config']['rows']} rows, {report['config']['dtype']}, "
             f"{report['machine']['cpu_count']} cores)",
             f"{'backend':<10}{'L':>7}{'ms':>10}{'x fft_conv':>11}{'x scipy':>9}"
             f"{'GFLOP/s':>9}{'peak MiB':>10}{'peak/out':>9}"]
    skipped = []
    for row in report["results"]:
        if row["status"] != "ok":
            skipped.append(f"  skipped {row['backend']} L={row['L']}: {row['reason']}")
            continue
        lines.append(f"{row['backend']:<10}{row['L']:>7}{row['seconds'] * 1e3:>10.2f}"
                     f"{row['speedup_vs_fft']:>11.2f}{row['speedup_vs_scipy']:>9.2f}"
                     f"{row['gflops']:>9.1f}{row['peak_bytes'] / 2**20:>10.1f}"
                     f"{row['peak_over_output']:>9.2f}")
    return "\n".join(lines + skipped)


def save(report: dict, out: Path, name: str = "bench") -> list[Path]:
    """Write NAME.json and NAME.png (viz.plot_benchmark) into ``out``; return the paths."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz import plot_benchmark

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jpath, ppath = out / f"{name}.json", out / f"{name}.png"
    jpath.write_text(json.dumps(report, indent=1) + "\n")
    fig = plot_benchmark(report)
    fig.savefig(ppath, dpi=80)
    plt.close(fig)
    return [jpath, ppath]


def _worker_main(argv: list[str]) -> int:
    cfg = json.loads(argv[0])
    name = cfg.pop("name")
    for row in measure_backend(name, **cfg):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
