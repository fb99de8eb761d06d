"""Rung 5a's command line: check the CUDA kernel on a GPU, time it, and write the SASS report.

    python -m longconv_edu.kernels.cuda --check --bench --out DIR   # on a machine with a GPU
    python -m longconv_edu.kernels.cuda --sass-report [PATH]        # anywhere (compiles only)
    python -m longconv_edu.kernels.cuda --model                     # the performance model

--check: cuda_conv against torch.fft's fft_conv, forward and forward+backward (both gradients),
  B=2, H=64 at L = 256, 1K, 4K, 16K, 32K, 64K and a non-power of two (3000); float32, relative
  error (max |a - b| / max |b|) below 1e-4 (float32 rounding of log2 N stages and L-term sums,
  with headroom); any mismatch: exit status 1. Each row names the path (fused, a cluster of C
  blocks, three passes); where it is a cluster (sm_90, L > 16K), the three passes (cluster=1)
  are checked and timed too, as rows of their own.
--bench: median of 25 timed runs (after 5 warm-up runs) of each, with CUDA events, at
  B*H = 256 (B=4, H=64) for the same lengths; writes DIR/cuda_bench.json and DIR/cuda_bench.png
  (the ratio fft_conv time / cuda_conv time per L, forward and forward+backward).
Without a usable GPU, --check/--bench exit with status 2 and say why.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

CHECK_LENGTHS = (256, 1024, 3000, 4096, 16384, 32768, 65536)
TOL = 1e-4
NO_GPU = ("no CUDA device: {why}. --check and --bench need an NVIDIA GPU, a CUDA build of torch "
          "and NUMBA_ENABLE_CUDASIM unset. Without a GPU, the same kernel code runs under numba's "
          "simulator at small sizes: NUMBA_ENABLE_CUDASIM=1 python -m pytest "
          "tests/test_kernels_cuda_sim.py")


def gpu_problem() -> str | None:
    """Why --check/--bench cannot run here (None when they can)."""
    from .cuda import simulator_active
    if simulator_active():
        return "NUMBA_ENABLE_CUDASIM=1 is set (the simulator cannot time or check a GPU)"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (no GPU, or a CPU-only build of torch)"
    from numba import cuda as ncuda
    if not ncuda.is_available():
        return "numba.cuda finds no usable GPU or driver"
    return None


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def conv_path(L: int, cluster=None) -> str:
    """The path ``cuda_conv`` takes for float32 rows of length L on this GPU."""
    import numpy as np

    from .cuda import device_cluster_max, device_smem_optin, monarch_plan
    c = device_cluster_max() if cluster is None else cluster
    p = monarch_plan(L, np.float32, smem_bytes=device_smem_optin(), cluster=c)
    return f"cluster of {p.cluster}" if p.cluster > 1 else "fused" if p.passes == 1 else "three passes"


def _variants(L: int) -> list:
    """(kwargs, path) of cuda_conv to run at L: the default, and the three passes too where the
    default is a cluster."""
    out = [({}, conv_path(L))]
    if out[0][1].startswith("cluster"):
        out.append(({"cluster": 1}, conv_path(L, 1)))
    return out


def check(lengths=CHECK_LENGTHS, *, B: int = 2, H: int = 64, log=print) -> list[dict]:
    """cuda_conv vs fft_conv on the GPU: forward and both gradients; rows with errors and 'ok'."""
    from ..conv import fft_conv
    from .cuda import cuda_conv
    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    for L in lengths:
        u = torch.randn(B, H, L, device="cuda", generator=g, requires_grad=True)
        k = torch.randn(H, L, device="cuda", generator=g, requires_grad=True) / L ** 0.5
        gy = torch.randn(B, H, L, device="cuda", generator=g)
        yr = fft_conv(u, k)
        gur, gkr = torch.autograd.grad(yr, (u, k), gy)
        for kw, how in _variants(L):
            y = cuda_conv(u, k, **kw)
            gu, gk = torch.autograd.grad(y, (u, k), gy)
            errs = {"y": _rel(y.detach(), yr.detach()), "grad_u": _rel(gu, gur),
                    "grad_k": _rel(gk, gkr)}
            row = {"L": L, "path": how, **errs, "ok": all(e < TOL for e in errs.values())}
            rows.append(row)
            if log:
                log(f"check L={L:>6} ({how}): y {errs['y']:.1e}  grad_u {errs['grad_u']:.1e}  "
                    f"grad_k {errs['grad_k']:.1e}  {'ok' if row['ok'] else 'MISMATCH'}")
    return rows


def _median_ms(fn, warmup: int = 5, repeats: int = 25) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def bench(lengths=CHECK_LENGTHS, *, B: int = 4, H: int = 64, log=print) -> list[dict]:
    """Median milliseconds of cuda_conv and fft_conv, forward and forward+backward."""
    from ..conv import fft_conv
    from .cuda import cuda_conv
    rows = []
    for L in lengths:
        u = torch.randn(B, H, L, device="cuda", requires_grad=True)
        k = torch.randn(H, L, device="cuda", requires_grad=True)
        gy = torch.randn(B, H, L, device="cuda")
        for kw, how in _variants(L):            # fft_conv timed again beside each: interleaved
            row = {"L": L, "B": B, "H": H, "path": how}
            cc = (lambda a, b, kw=kw: cuda_conv(a, b, **kw))
            for name, fn in (("cuda_conv", cc), ("fft_conv", fft_conv)):
                with torch.no_grad():
                    row[f"{name}_fwd_ms"] = _median_ms(lambda fn=fn, u=u, k=k: fn(u, k))
                row[f"{name}_fwdbwd_ms"] = _median_ms(
                    lambda fn=fn, u=u, k=k, gy=gy: torch.autograd.grad(fn(u, k), (u, k), gy))
            row["ratio_fwd"] = row["fft_conv_fwd_ms"] / row["cuda_conv_fwd_ms"]
            row["ratio_fwdbwd"] = row["fft_conv_fwdbwd_ms"] / row["cuda_conv_fwdbwd_ms"]
            rows.append(row)
            if log:
                log(f"bench L={L:>6} ({how}): fwd cuda {row['cuda_conv_fwd_ms']:.3f} ms, fft "
                    f"{row['fft_conv_fwd_ms']:.3f} ms (x{row['ratio_fwd']:.2f}); fwd+bwd "
                    f"x{row['ratio_fwdbwd']:.2f}")
    return rows


def _plot(rows, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    default, extra = [], []                 # per L the default path first, then the three passes
    for r in rows:
        (extra if any(d["L"] == r["L"] for d in default) else default).append(r)
    Ls = [r["L"] for r in default]
    ax.plot(Ls, [r["ratio_fwd"] for r in default], "o-", label="forward")
    ax.plot(Ls, [r["ratio_fwdbwd"] for r in default], "s-", label="forward + backward")
    if extra:
        ax.plot([r["L"] for r in extra], [r["ratio_fwd"] for r in extra], "x", color="gray",
                label="forward, three passes (cluster=1)")
    ax.axhline(1, color="gray", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("L (B*H = 256, float32)")
    ax.set_ylabel("fft_conv time / cuda_conv time")
    ax.set_title(torch.cuda.get_device_name())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m longconv_edu.kernels.cuda",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="cuda_conv vs fft_conv on the GPU")
    ap.add_argument("--bench", action="store_true", help="time both (CUDA events, median of 25)")
    ap.add_argument("--out", default=None, help="folder for cuda_check.json, cuda_bench.json/png")
    ap.add_argument("--sass-report", nargs="?", const="", default=None, metavar="PATH",
                    help="compile every configuration and write the SASS report JSON "
                         "(default: course/results/cuda/sass_report.json)")
    ap.add_argument("--quick", action="store_true", help="with --sass-report: two configurations")
    ap.add_argument("--model", action="store_true",
                    help="write course/results/cuda/perf_model.json from the SASS report and print it")
    a = ap.parse_args(argv)
    if a.sass_report is not None:
        from .cuda import SASS_REPORT, write_sass_report
        write_sass_report(a.sass_report or SASS_REPORT, quick=a.quick)
    if a.model:
        from .perf_model import model_table, write_model
        print(model_table(write_model()))
    if not (a.check or a.bench):
        if a.sass_report is not None or a.model:
            return 0
        ap.print_help()
        return 2
    why = gpu_problem()
    if why is not None:
        print(NO_GPU.format(why=why), file=sys.stderr)
        return 2
    out = a.out or "."
    os.makedirs(out, exist_ok=True)
    status = 0
    if a.check:
        rows = check()
        with open(os.path.join(out, "cuda_check.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "tol": TOL, "rows": rows}, f, indent=1)
        if not all(r["ok"] for r in rows):
            print("MISMATCH: cuda_conv disagrees with fft_conv (see cuda_check.json)", file=sys.stderr)
            status = 1
    if a.bench:
        rows = bench()
        with open(os.path.join(out, "cuda_bench.json"), "w") as f:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)
        _plot(rows, os.path.join(out, "cuda_bench.png"))
    return status


if __name__ == "__main__":
    sys.exit(main())
