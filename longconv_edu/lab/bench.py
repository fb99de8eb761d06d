"""The benchmark behind ``python -m longconv_edu bench``: every backend against the strongest CPU FFTs.

For each backend from the registry (``dispatch.get_backend``) and each length L it reports

* the median time of ``backend(u, k)`` with u (B, H, L), k (H, L), B*H = --rows rows;
* the speedup over four peers, each the causal convolution rfft -> product -> irfft (size
  N = fft_size(L)) by one library: ``fft_conv`` (torch.fft, MKL/pocketfft), scipy.fft
  (``workers`` = the thread count), FFTW via ``pyfftw`` (planned once per L with FFTW_MEASURE
  *outside* the timing; the plan time is reported separately as ``fftw_plan_seconds``) and
  ``ducc0.fft``. Every peer transforms the kernel on every call, as the fused kernel does, and
  every peer is timed *in the same process, interleaved call by call with the backend*, so a busy
  machine slows all alike and the ratios stay meaningful when the seconds do not (the JSON keeps
  every sample, and also the ratio of the best samples, closest to an unshared machine);
  ``best_peer`` names the fastest peer (by median) and ``speedup_vs_best_peer`` is the ratio to it;
* forward + backward (for L <= --fwd-bwd-max): the median of ``fn(u, k).backward(g)`` with u and
  k trainable, interleaved with the same for ``fft_conv``'s autograd, and their ratio;
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
  copy bandwidth (a 256 MiB tensor copy, bytes read + written per second); each row's GFLOP/s as
  a fraction of the matmul roof, and whether the fused kernel's per-row buffer (2 x N/2 numbers
  and the kernel spectrum) fits in this machine's L2 (``fits_l2``);
* the load average (1 minute) before and after every (backend, L), and of the whole run.

``--block`` measures instead one ``LongConv`` layer's forward + backward (GELU and the output
projection included) with each backend, interleaved, against backend "fft".

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

from .._checks import available_bytes, check_choice
from ..fft import fft_size
from ..io_model import fft_flops
from ..timing import time_call

DEFAULT_LENGTHS = (1024, 4096, 16384, 65536)
PEERS = ("torch.fft", "scipy.fft", "fftw", "ducc0")
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
    p.add_argument("--fwd-bwd-max", type=int, default=65536, metavar="L",
                   help="time forward+backward up to this L (0: never; default: %(default)s)")
    p.add_argument("--block", action="store_true",
                   help="time a LongConv layer's forward+backward per backend instead")


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
    if args.batch < 1:
        return _fail(f"--batch must be an integer >= 1, got {args.batch}")
    if args.rows < args.batch or args.rows % args.batch:
        return _fail(f"--rows must be a positive multiple of --batch = {args.batch}, got {args.rows}")
    if args.fwd_bwd_max < 0:
        return _fail(f"--fwd-bwd-max must be >= 0, got {args.fwd_bwd_max}")
    if args.repeats < 1:
        return _fail(f"--repeats must be >= 1, got {args.repeats}")
    if not args.time_limit > 0:
        return _fail(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    problem = check_writable(args.out)          # before any measurement, not after all of them
    if problem:
        return _fail(problem)
    command = (f"python -m longconv_edu bench --lengths {' '.join(map(str, args.lengths))}"
               f" --rows {args.rows} --batch {args.batch} --dtype {args.dtype} --backends"
               f" {' '.join(names)} --repeats {args.repeats}")
    if args.block:
        report = benchmark_block(names, sorted(set(args.lengths)), rows=args.rows,
                                 batch=args.batch, dtype=args.dtype, repeats=args.repeats,
                                 seed=args.seed)
        report["command"] = command + " --block" + f" --name {args.name}"
        print(format_block_table(report))
        paths = save(report, args.out, args.name, plot=False)
        print("saved " + ", ".join(str(p) for p in paths))
        return 0
    report = benchmark(names, sorted(set(args.lengths)), rows=args.rows, batch=args.batch,
                       dtype=args.dtype, repeats=args.repeats, time_limit=args.time_limit,
                       isolate=not args.no_isolate, progress=not args.no_progress, seed=args.seed,
                       fwd_bwd_max=args.fwd_bwd_max)
    report["command"] = (command + f" --time-limit {args.time_limit:g} --fwd-bwd-max "
                         f"{args.fwd_bwd_max} --name {args.name}"
                         + (" --no-isolate" if args.no_isolate else ""))
    print(format_table(report))
    paths = save(report, args.out, args.name)
    print("saved " + ", ".join(str(p) for p in paths))
    return 0


# ============================================================================ the measurement
def check_writable(out) -> str | None:
    """None if files can be written into folder ``out`` (created if missing), else why not."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".bench-probe-"):
            pass
    except OSError as e:
        return f"--out {str(out)!r} is not a writable folder ({e.strerror or e}); choose another"
    return None


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def benchmark(names, lengths, *, rows=256, batch=2, dtype="float32", repeats=5, time_limit=60.0,
              isolate=True, progress=True, seed=0, fwd_bwd_max=65536) -> dict:
    """Measure roofs, then each backend (in its own subprocess when isolate); return the report."""
    from tqdm.auto import tqdm

    cfg = dict(lengths=list(lengths), rows=rows, batch=batch, channels=rows // batch, dtype=dtype,
               repeats=repeats, time_limit=time_limit, seed=seed, fwd_bwd_max=fwd_bwd_max)
    report = {"started": _now(), "machine": machine_info(), "config": cfg,
              "flop_model": FLOP_MODEL, "memory_method": _memory_method(), "isolated": isolate,
              "peers": list(PEERS), "load_average_start": _loadavg(),
              "omp_wait_policy": (os.environ.get("OMP_WAIT_POLICY", "PASSIVE") if isolate
                                  else os.environ.get("OMP_WAIT_POLICY")),
              "peer_note": "every peer transforms the kernel on every call, as the fused kernel "
                           "does; FFTW is planned once per L (FFTW_MEASURE) outside the timing"}
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
    report["load_average_finish"] = _loadavg()
    return report


def _run_worker(name: str, cfg: dict):
    """Run measure_backend(name) in a fresh Python and yield its rows as they arrive."""
    cmd = [sys.executable, "-m", "longconv_edu.lab.bench", json.dumps({"name": name, **cfg})]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # pyfftw brings its own libgomp beside torch's: two OpenMP pools whose idle workers spin
    # on the same 2 cores made torch.fft 20x slower after an FFTW call (measured). Passive
    # waiting stops the fight; the user's own setting wins.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
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


def measure_backend(name, *, lengths, rows, batch, channels, dtype, repeats, time_limit, seed,
                    fwd_bwd_max=65536):
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
    threads = torch.get_num_threads()
    l2 = machine_l2_bytes()
    for L in lengths:
        calls = repeats + 2
        t_pred = last_t * (L / last_L) ** growth * calls * (3 if L <= fwd_bwd_max else 1)
        m_pred = last_mem * (L / last_L) ** 2
        if L > last_L and t_pred > time_limit:
            yield _skipped(name, L, f"would take ~{t_pred:.0f} s for {calls} calls (time "
                                    f"extrapolated as L^{growth:.1f} from L={last_L}); over "
                                    f"--time-limit {time_limit:g} s")
            continue
        if L > last_L and m_pred > 0.25 * available_bytes():
            yield _skipped(name, L, f"would need ~{m_pred / 2**30:.1f} GiB (extrapolated as "
                                    f"L^2 from L={last_L}); over a quarter of free memory")
            continue
        load0 = _loadavg()
        u, k = inputs(L)
        try:
            peak, _ = peak_call(fn, u, k)
            peers, plan_s = make_peers(B, H, L, dtype, threads)
            un, kn = u.numpy(), k.numpy()
            args = {"torch.fft": (u, k)}
            for p in peers:
                peers[p](*args.get(p, (un, kn)))          # warm-up (and JIT/plan caches)
            t_b, t_p = [], {p: [] for p in peers}
            for _ in range(repeats):         # interleaved: all see the same machine
                t_b.append(_timed(fn, u, k))
                for p in peers:
                    t_p[p].append(_timed(peers[p], *args.get(p, (un, kn))))
            fb = _fwd_bwd_times(fn, fft_conv, u, k, repeats) if L <= fwd_bwd_max else None
        except Exception as e:               # noqa: BLE001 - e.g. a length a backend refuses
            yield _skipped(name, L, f"{type(e).__name__}: {e}")
            continue
        sec = statistics.median(t_b)
        med = {p: statistics.median(t) for p, t in t_p.items()}
        best = min(med, key=med.get)
        out_bytes = u.numel() * u.element_size()
        gflops = conv_flops(rows, L) / sec / 1e9
        M = max(8, fft_size(L)) // 2
        row = {"backend": name, "L": L, "status": "ok", "seconds": sec, "seconds_all": t_b,
               "peer_seconds": med, "peer_seconds_all": t_p, "fftw_plan_seconds": plan_s,
               "speedup": {p: med[p] / sec for p in med},
               "best_peer": best, "speedup_vs_best_peer": med[best] / sec,
               "best_sample_speedup_vs_best_peer": min(t_p[best]) / min(t_b),
               "speedup_vs_fft": med["torch.fft"] / sec, "fft_seconds": med["torch.fft"],
               "speedup_vs_scipy": med["scipy.fft"] / sec, "scipy_seconds": med["scipy.fft"],
               "best_speedup_vs_fft": min(t_p["torch.fft"]) / min(t_b),
               "best_speedup_vs_scipy": min(t_p["scipy.fft"]) / min(t_b),
               "gflops": gflops, "fits_l2": (4 * M + 2) * u.element_size() <= l2,
               "peak_bytes": peak, "output_bytes": out_bytes,
               "peak_over_output": peak / out_bytes, "load_average": [load0, _loadavg()],
               "numba_threading_layer": _threading_layer()}
        if fb is not None:
            row.update({"fwd_bwd_seconds": statistics.median(fb[0]),
                        "fft_fwd_bwd_seconds": statistics.median(fb[1]),
                        "fwd_bwd_seconds_all": fb[0], "fft_fwd_bwd_seconds_all": fb[1],
                        "fwd_bwd_speedup_vs_fft": statistics.median(fb[1]) / statistics.median(fb[0])})
        yield row
        if L > last_L:
            growth = _growth(last_L, last_t, L, sec)
        last_L, last_t, last_mem = L, sec, max(peak, 1)


def _threading_layer() -> str | None:
    """The numba threading layer this process runs (None before any parallel region)."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _fwd_bwd_times(fn, ref, u, k, repeats):
    """Interleaved seconds of fn(u, k).backward(g) and the same for ref (u, k both trainable)."""
    import torch
    g = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    uu, kk = u.clone().requires_grad_(True), k.clone().requires_grad_(True)

    def step(f):
        def go():
            uu.grad = kk.grad = None
            f(uu, kk).backward(g)
        return go
    a, b = step(fn), step(ref)
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_timed(a))
        tb.append(_timed(b))
    return ta, tb


def machine_l2_bytes() -> int:
    """This machine's L2 size per core (sysfs; 1 MiB when it cannot be read)."""
    try:
        txt = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        mult = {"K": 2**10, "M": 2**20}.get(txt[-1], 1)
        return int(txt.rstrip("KM")) * mult
    except (OSError, ValueError):
        return 2**20


def _growth(L0: int, t0: float, L1: int, t1: float) -> float:
    """The exponent p of t ~ L^p between two measurements, clamped to [1, 2]."""
    if L1 <= L0 or t0 <= 0 or t1 <= 0:
        return 2.0
    return min(2.0, max(1.0, math.log(t1 / t0) / math.log(L1 / L0)))


def conv_flops(rows: int, L: int) -> float:
    """Nominal flops of one FFT convolution call (see FLOP_MODEL): two real FFTs per row."""
    return rows * 2 * fft_flops(2 * L, real_input=True)


def _timed(fn, *args) -> float:
    """Seconds of one call: a single sample, so the caller can interleave backends call by call."""
    return time_call(fn, *args, repeats=1, warmup=0)


def make_peers(B: int, H: int, L: int, dtype: str, threads: int):
    """({peer: conv(u, k)}, FFTW plan seconds) for the library peers at this shape.

    Each conv is the causal convolution rfft(u), rfft(k) (every call), product, irfft, first L
    samples, at N = fft_size(L). "torch.fft" takes tensors (it is ``fft_conv``); the others take
    NumPy arrays u (B, H, L), k (H, Lk). A peer whose package is missing is left out.
    """
    import numpy as np
    import scipy.fft as sf

    from ..conv import fft_conv

    check_choice(dtype, "dtype", ["float32", "float64"])
    N = fft_size(L)
    peers = {"torch.fft": fft_conv}

    def scipy_conv(u, k):
        y = sf.irfft(sf.rfft(u, n=N, workers=threads) * sf.rfft(k, n=N, workers=threads),
                     n=N, workers=threads)
        return y[..., :L]
    peers["scipy.fft"] = scipy_conv
    plan_s = None
    try:
        import pyfftw
        t0 = time.perf_counter()
        xu = pyfftw.zeros_aligned((B * H, N), dtype)
        xk = pyfftw.zeros_aligned((H, N), dtype)
        cdt = np.result_type(dtype, np.complex64)
        spec = pyfftw.zeros_aligned((B * H, N // 2 + 1), cdt)
        flags = ("FFTW_MEASURE",)
        fu = pyfftw.FFTW(xu, pyfftw.empty_aligned((B * H, N // 2 + 1), cdt), threads=threads,
                         flags=flags)
        fk = pyfftw.FFTW(xk, pyfftw.empty_aligned((H, N // 2 + 1), cdt), threads=threads,
                         flags=flags)
        fi = pyfftw.FFTW(spec, pyfftw.empty_aligned((B * H, N), dtype), direction="FFTW_BACKWARD",
                         threads=threads, flags=flags)
        plan_s = time.perf_counter() - t0
        xu[:] = 0
        xk[:] = 0

        def fftw_conv(u, k):
            xu[:, :L] = u.reshape(B * H, L)           # the upper half stays zero
            xk[:, :k.shape[-1]] = k
            U, K = fu(), fk()
            np.multiply(U.reshape(B, H, -1), K, out=spec.reshape(B, H, -1))
            return fi(normalise_idft=True)[:, :L].reshape(B, H, L)
        peers["fftw"] = fftw_conv
    except ImportError:
        pass
    try:
        import ducc0
        pad = np.zeros((B * H, N), dtype)
        padk = np.zeros((H, N), dtype)

        def ducc_conv(u, k):
            pad[:, :L] = u.reshape(B * H, L)
            padk[:, :k.shape[-1]] = k
            U = ducc0.fft.r2c(pad, axes=(1,), nthreads=threads)
            K = ducc0.fft.r2c(padk, axes=(1,), nthreads=threads)
            U = (U.reshape(B, H, -1) * K).reshape(B * H, -1)
            y = ducc0.fft.c2r(U, axes=(1,), lastsize=N, forward=False, inorm=2, nthreads=threads)
            return y[:, :L].reshape(B, H, L)
        peers["ducc0"] = ducc_conv
    except ImportError:
        pass
    return peers, plan_s


# ---------------------------------------------------------------------------- a model block
def benchmark_block(names, lengths, *, rows=256, batch=2, dtype="float32", repeats=5, seed=0):
    """A LongConv layer's forward + backward (B, H, L) per backend, interleaved across backends.

    The layer is ``layers.LongConv(H, L, backend=name)`` (the convolution, skip term, GELU and the
    output projection); one step is ``layer(u).square().mean().backward()``. Backends that fail
    at L are reported as skipped. Ratios are against backend "fft" in the same rounds.
    """
    import torch

    from ..layers import LongConv

    tdtype = getattr(torch, dtype)
    B, H = batch, rows // batch
    report = {"started": _now(), "machine": machine_info(), "mode": "block",
              "config": dict(lengths=list(lengths), rows=rows, batch=batch, channels=H,
                             dtype=dtype, repeats=repeats, seed=seed, backends=list(names)),
              "load_average_start": _loadavg(),
              # torch's OpenMP pool reads it once, at start-up: what this process runs under
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "results": []}
    for L in lengths:
        torch.manual_seed(seed)
        u = torch.randn(B, H, L, dtype=tdtype)
        steps, reasons = {}, {}
        for name in names:
            try:
                layer = LongConv(H, L, backend=name).to(tdtype)

                def step(layer=layer, u=u):
                    layer.zero_grad(set_to_none=True)
                    layer(u).square().mean().backward()
                step()
                steps[name] = step
            except Exception as e:            # noqa: BLE001 - reported, not fatal
                reasons[name] = f"{type(e).__name__}: {e}"
        times = {n: [] for n in steps}
        for _ in range(repeats):
            for n, st in steps.items():
                times[n].append(_timed(st))
        med = {n: statistics.median(t) for n, t in times.items()}
        for n in names:
            if n in reasons:
                report["results"].append(_skipped(n, L, reasons[n]))
                continue
            report["results"].append({
                "backend": n, "L": L, "status": "ok", "seconds": med[n], "seconds_all": times[n],
                "speedup_vs_fft": med["fft"] / med[n] if "fft" in med else None,
                "load_average": _loadavg()})
    report["finished"] = _now()
    report["load_average_finish"] = _loadavg()
    return report


def format_block_table(report: dict) -> str:
    lines = [f"LongConv block forward+backward ({report['config']['rows']} rows, "
             f"{report['config']['dtype']})", f"{'backend':<18}{'L':>7}{'ms':>10}{'x fft':>8}"]
    for row in report["results"]:
        if row["status"] != "ok":
            lines.append(f"{row['backend']:<18}{row['L']:>7}  skipped: {row['reason'][:60]}")
            continue
        sp = row["speedup_vs_fft"]
        lines.append(f"{row['backend']:<18}{row['L']:>7}{row['seconds'] * 1e3:>10.2f}"
                     + (f"{sp:>8.2f}" if sp is not None else f"{'-':>8}"))
    return "\n".join(lines)


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
    versions = {}
    for mod in ("pyfftw", "ducc0"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    try:
        from ..kernels import cpu as _cpu  # noqa: F401  (pins numba's threading layer)
        layer = numba.threading_layer()
    except (ImportError, ValueError):
        layer = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "numba_threading_layer": layer,
            "l2_bytes": machine_l2_bytes(), **versions, "python": platform.python_version(),
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
             f"{report['machine']['cpu_count']} cores, load {report.get('load_average_start')})",
             f"{'backend':<10}{'L':>7}{'ms':>9}" + "".join(f"{p + ' ms':>14}" for p in PEERS)
             + f"{'best peer':>11}{'x best':>8}{'fb x fft':>9}{'GFLOP/s':>9}{'% roof':>7}"
             f"{'peak MiB':>9}"]
    skipped = []
    for row in report["results"]:
        if row["status"] != "ok":
            skipped.append(f"  skipped {row['backend']} L={row['L']}: {row['reason']}")
            continue
        ps = row["peer_seconds"]
        fb = row.get("fwd_bwd_speedup_vs_fft")
        lines.append(f"{row['backend']:<10}{row['L']:>7}{row['seconds'] * 1e3:>9.2f}"
                     + "".join(f"{ps[p] * 1e3:>14.2f}" if p in ps else f"{'-':>14}" for p in PEERS)
                     + f"{row['best_peer']:>11}{row['speedup_vs_best_peer']:>8.2f}"
                     + (f"{fb:>9.2f}" if fb is not None else f"{'-':>9}")
                     + f"{row['gflops']:>9.1f}{100 * row['gflops'] / r['matmul_gflops']:>7.0f}"
                     f"{row['peak_bytes'] / 2**20:>9.1f}")
    return "\n".join(lines + skipped)


def peer_table(report: dict, backend: str = "numba") -> list[dict]:
    """One dict per measured L of ``backend``: its ms, each peer's ms, the best peer and the
    ratios (median), forward+backward ratio, GFLOP/s and % of the matmul roof, fits_l2."""
    roof = report["roofs"]["matmul_gflops"]
    out = []
    for r in report["results"]:
        if r["backend"] != backend or r["status"] != "ok":
            continue
        out.append({"L": r["L"], "ms": r["seconds"] * 1e3,
                    **{f"{p} ms": r["peer_seconds"][p] * 1e3 for p in r["peer_seconds"]},
                    "best peer": r["best_peer"], "x best peer": r["speedup_vs_best_peer"],
                    "fwd+bwd x fft_conv": r.get("fwd_bwd_speedup_vs_fft"),
                    "GFLOP/s": r["gflops"], "% matmul roof": 100 * r["gflops"] / roof,
                    "fits L2": r["fits_l2"]})
    return out


def peer_table_markdown(report: dict, backend: str = "numba") -> str:
    """``peer_table`` as a Markdown table (the course page and the README quote it)."""
    rows = peer_table(report, backend)
    if not rows:
        return ""
    cols = list(rows[0])
    fmt = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def save(report: dict, out: Path, name: str = "bench", *, plot: bool = True) -> list[Path]:
    """Write NAME.json and (plot) NAME.png (viz.plot_benchmark) into ``out``; return the paths."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz import plot_benchmark

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jpath, ppath = out / f"{name}.json", out / f"{name}.png"
    jpath.write_text(json.dumps(report, indent=1) + "\n")
    if not plot:
        return [jpath]
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
