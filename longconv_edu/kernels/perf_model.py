"""Rung 5a's performance model: predicted time of the CUDA kernels and torch.fft's lower bound.

No GPU is needed: the kernel's cost comes from its SASS (``kernels.cuda.sass_report``, counted
from the compiled machine code) and its memory traffic from ``io_model``. Per GPU (``GPUS``):

    kernel time  = max(HBM bytes / bandwidth,  warp instructions on the busiest SM / issue rate)
    torch.fft    = HBM bytes of its five unfused kernels / bandwidth   (a lower bound)

* issue rate: 4 warp schedulers per SM, each issuing one warp instruction per clock (A100 and
  H100 SMs both have four sub-partitions: NVIDIA A100 and H100 architecture whitepapers);
* the busiest SM: the B*H row blocks are spread over the SMs in waves of (SMs x blocks per SM),
  blocks per SM limited by shared memory, registers and threads (``occupancy``); the busiest SM
  runs ceil(B*H / SMs) blocks, in full waves and a partial last wave of the rest;
* latency hiding, an assumption of this model: an SM issues at full rate only with at least
  ``WARPS_FOR_FULL_ISSUE`` = 16 warps resident (4 per scheduler); with fewer, proportionally
  slower. Shared-memory bank conflicts and the L2 are not modelled;
* torch.fft's bound counts bytes only (``io_model.unfused_fft_conv`` with one pass per
  transform, the optimistic case), no instructions and no launch overhead; the kernel's time
  has no launch overhead either. The kernel's spectrum of k is cached across calls (computed
  once per kernel tensor version), torch's fft_conv computes rfft(k) on every call: both as
  they run;
* the ``cuda`` backend's HBM bytes: ``io_model.fused_conv`` / ``io_model.three_pass_traffic``
  with ``real_input=True`` (the row as N/2 complex values, the N/2 + 1-bin half spectrum read
  once per row, not once per channel), plus the constant tables (roots, twiddles) once per
  launch: every block reads them, all but the first from L2. Rows beyond one block's shared
  memory take three kernels, each timed on its own (its blocks per row, threads, registers,
  shared memory and SASS from the report) and the times added: the intermediate row (N reals)
  goes to HBM and back twice. On sm_90 such rows are held instead by a cluster of C blocks
  (``kernels.cuda._cluster``: C = 2 at L = 32K, 4 at 64K): one kernel, R*C blocks of L/C
  outputs each, the fused kernel's bytes (each block of a cluster reads the whole input row,
  and the C - 1 repeat reads, made at the same time by the cluster's blocks, are counted as
  L2 hits), on the SMs clusters can fill (``GPU.cluster_sms``: a worst case). Distributed
  shared memory is slower than a block's own, and its latency is not modelled beyond the
  warps rule above. The L2 is not modelled: in particular, where B*H rows of
  intermediate (B*H*N*4 bytes: 34 MB at L = 16K) would fit the L2 (40 MB A100, 50 MB H100),
  passes 2 and 3 may read part of it from there, faster than modelled.

GPU numbers (public specifications): A100 SXM4 80 GB: 2039 GB/s HBM2e, 108 SMs, 1410 MHz boost,
164 KiB shared memory per SM, 163 KiB per block with opt-in (NVIDIA A100 datasheet and
whitepaper). H100 SXM5 80 GB: 3350 GB/s HBM3, 132 SMs, 1980 MHz (67 TFLOPS FP32 = 16896 lanes x
2 x 1.98 GHz), 8 GPCs holding 66 TPCs of 2 SMs, 228 KiB per SM, 227 KiB per block (NVIDIA H100
datasheet and whitepaper; CUDA
C++ Programming Guide, compute capability 8.0 / 9.0 table). Both: 65536 registers, 2048 threads
and 32 blocks per SM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import io_model
from .._checks import check_choice, check_int

__all__ = ["GPU", "GPUS", "WARPS_FOR_FULL_ISSUE", "occupancy", "kernel_time", "fft_conv_bound",
           "monarch_time", "model_table", "model_rows", "write_model", "model_json_path"]


@dataclass(frozen=True)
class GPU:
    """What the model needs of one GPU."""
    name: str
    cc: tuple
    hbm_bytes_per_s: float
    sms: int
    clock_hz: float
    smem_per_sm: int
    smem_per_block: int
    schedulers: int = 4
    regs_per_sm: int = 65536
    threads_per_sm: int = 2048
    blocks_per_sm: int = 32
    gpcs: int | None = None

    def cluster_sms(self, C: int) -> int:
        """SMs that clusters of C blocks (one block per SM) can all occupy at once, in the worst
        case this model assumes: a cluster runs inside one GPC, each GPC has an even number of
        SMs (whole TPCs of 2), so C <= 2 loses none and a larger C may leave up to C - 2 idle
        per GPC (on a GPU, cudaOccupancyMaxActiveClusters gives the real number)."""
        C = check_int(C, "C", min=1, max=16, power_of_two=True)
        if C <= 2:
            return self.sms
        if self.gpcs is None:
            raise ValueError(f"{self.name}: GPC count unknown (no thread block clusters), C={C}")
        return self.sms - (C - 2) * self.gpcs

    @property
    def issue_per_s(self) -> float:
        """Warp instructions per second, all SMs: SMs x schedulers x clock."""
        return self.sms * self.schedulers * self.clock_hz


GPUS = {
    "A100": GPU("A100 SXM4 80GB", (8, 0), 2039e9, 108, 1410e6, 164 * 1024, 163 * 1024),
    "H100": GPU("H100 SXM5 80GB", (9, 0), 3350e9, 132, 1980e6, 228 * 1024, 227 * 1024, gpcs=8),
}
WARPS_FOR_FULL_ISSUE = 16


def _gpu(gpu) -> GPU:
    if isinstance(gpu, GPU):
        return gpu
    check_choice(gpu, "gpu", tuple(GPUS))
    return GPUS[gpu]


def occupancy(gpu, *, threads: int, registers: int, smem_bytes: int) -> int:
    """Blocks of one kernel resident on an SM (0: the block does not fit at all).

    Registers are allocated per warp in units of 256 (8 per thread), shared memory as asked
    plus 1 KiB reserved per block (CUDA C++ Programming Guide, occupancy)."""
    g = _gpu(gpu)
    threads = check_int(threads, "threads", min=1, max=1024)
    registers = check_int(registers, "registers", min=1, max=255)
    smem_bytes = check_int(smem_bytes, "smem_bytes", min=0)
    if smem_bytes > g.smem_per_block:
        return 0
    warps = -(-threads // 32)
    regs_block = warps * 32 * (-(-registers // 8) * 8)
    by_regs = g.regs_per_sm // regs_block
    by_smem = g.smem_per_sm // (smem_bytes + 1024) if smem_bytes else g.blocks_per_sm
    by_threads = g.threads_per_sm // (warps * 32)
    return max(0, min(by_regs, by_smem, by_threads, g.blocks_per_sm))


def kernel_time(gpu, *, rows: int, L: int, sass_per_element: float, threads: int,
                registers: int, smem_bytes: int, hbm_bytes: float, sms: int | None = None) -> dict:
    """Modelled seconds of one kernel over ``rows`` row blocks: {"time", "issue", "hbm",
    "blocks_per_sm", "waves", "warps", "bound"}; sms: the SMs the blocks may use (default
    all; clusters: ``GPU.cluster_sms``)."""
    g = _gpu(gpu)
    rows = check_int(rows, "rows", min=1)
    L = check_int(L, "L", min=1)
    sms = g.sms if sms is None else check_int(sms, "sms", min=1, max=g.sms)
    bps = occupancy(g, threads=threads, registers=registers, smem_bytes=smem_bytes)
    if bps == 0:
        raise ValueError(f"a block of {threads} threads x {registers} registers with {smem_bytes} "
                         f"bytes of shared memory does not fit one {g.name} SM")
    per_sm = -(-rows // sms)                       # blocks the busiest SM runs in all
    waves = -(-per_sm // bps)
    resident = min(bps, per_sm)
    warps = resident * -(-threads // 32)
    warp_insts_block = sass_per_element * L / 32
    # wave by wave: full waves of ``resident`` blocks, then the rest (a partial last wave issues
    # its own blocks' instructions, at the rate its warps allow)
    issue = 0.0
    for n, count in ((resident, per_sm // resident), (per_sm % resident, 1)):
        if n and count:
            eff = min(1.0, n * -(-threads // 32) / WARPS_FOR_FULL_ISSUE)
            issue += count * n * warp_insts_block / (g.schedulers * g.clock_hz * eff)
    hbm = hbm_bytes / g.hbm_bytes_per_s
    return {"time": max(issue, hbm), "issue": issue, "hbm": hbm, "blocks_per_sm": bps,
            "waves": waves, "warps": warps, "bound": "issue" if issue >= hbm else "HBM"}


def fft_conv_bound(gpu, B: int, H: int, L: int, dtype_bytes: int = 4) -> float:
    """torch.fft conv's lower bound in seconds: its unfused HBM bytes / bandwidth."""
    g = _gpu(gpu)
    return io_model.unfused_fft_conv(B, H, L, dtype_bytes=dtype_bytes).bytes / g.hbm_bytes_per_s


def _pick(rows, **want):
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()) and "per_element" in r:
            return r
    return None


def _table_bytes(M: int, outer: int, kind: str, s: int = 4, roots: int | None = None,
                 cluster: int = 1) -> int:
    """Bytes of the constant tables one launch of Monarch kernel ``kind`` reads (from HBM once;
    its other blocks hit the L2); roots: the fused kernel's root table size Q."""
    from . import cuda as kc
    real = np.float32 if s == 4 else np.float64
    if kind == "cluster":
        t = kc.monarch_tables(M, real, roots=roots, cluster=cluster)
        return sum(a.size for a in t.values()) * s
    t = kc.monarch_tables(M, real, outer) if outer > 1 else kc.monarch_tables(M, real, roots=roots)
    if kind == "conv" and kc.check_roots(M, roots) == M:
        return (t["roots"].size + t["twiddles"].size) * s      # no fine table to read
    names = {"conv": ("roots", "roots_fine", "twiddles"), "outer": ("roots_outer", "twiddles_outer"),
             "outer_inverse": ("roots_outer", "twiddles_outer"),
             "inner": ("roots_inner", "twiddles_split")}[kind]
    return sum(t[n].size for n in names) * s


def monarch_time(gpu, row: dict, *, B: int, H: int) -> dict:
    """Modelled time of the ``cuda`` backend's forward from one Monarch row of the SASS report
    (fused: one kernel; three passes: the sum of the three kernels' times), at B*H rows:
    {"time", "bound" (of the slowest kernel), "passes": [kernel_time of each launch]}."""
    from . import cuda as kc
    g = _gpu(gpu)
    B = check_int(B, "B", min=1)
    H = check_int(H, "H", min=1)
    if not isinstance(row, dict) or row.get("kernel") != "monarch" or "per_element" not in row:
        raise TypeError("row must be a Monarch forward row of the SASS report (kernel 'monarch', "
                        "with per_element)")
    L, R = row["L"], B * H
    N = kc.fft_size(L)
    M = N // 2
    if row.get("passes", 1) == 1:   # fused (C = 1) or a cluster of C blocks, L/C outputs each
        res = row["resources"][0]
        roots = row["plan"]["roots"]
        C = row["plan"].get("cluster", 1)
        hbm = (io_model.fused_conv(B, H, L, real_input=True).bytes
               + _table_bytes(M, 1, "cluster" if C > 1 else "conv", roots=roots, cluster=C))
        t = kernel_time(g, rows=R * C, L=L // C, sass_per_element=row["per_element"],
                        threads=row["threads"], registers=res["registers"],
                        smem_bytes=res["dynamic_shared"], hbm_bytes=hbm, sms=g.cluster_sms(C))
        return {"time": t["time"], "bound": t["bound"], "passes": [t]}
    outer = row["plan"]["outer"]
    traffic = io_model.three_pass_traffic(B, H, L, real_input=True, outer=outer).passes
    parts = []
    for res, (_, rd, wr) in zip(row["resources"], traffic):
        nb = res["blocks_per_row"]
        if L % nb:
            raise ValueError(f"L={L} is not a multiple of the {nb} blocks per row of {res['kind']}")
        t = kernel_time(g, rows=R * nb, L=L // nb, sass_per_element=res["per_element"],
                        threads=res["threads"], registers=res["registers"],
                        smem_bytes=res["dynamic_shared"],
                        hbm_bytes=rd + wr + _table_bytes(M, outer, res["kind"]))
        parts.append({**t, "kind": res["kind"]})
    slowest = max(parts, key=lambda t: t["time"])
    return {"time": sum(t["time"] for t in parts), "bound": slowest["bound"], "passes": parts}


def model_rows(report=None, *, gpus=("A100", "H100"), B: int = 4, H: int = 64, lengths=None) -> list[dict]:
    """The model at B*H rows (default 4 x 64 = 256) for every length of the SASS report.

    For each GPU and L: the registered ``cuda`` backend (the fused Monarch kernel where the row
    fits the GPU's shared memory, else the Monarch three passes: ``monarch_time``), the radix-2
    kernel alone, and torch.fft's bound; ``speedup`` = torch.fft bound / cuda backend time.
    """
    from . import cuda as kc
    report = kc.sass_report() if report is None else report
    B = check_int(B, "B", min=1)
    H = check_int(H, "H", min=1)
    R = B * H
    lengths = sorted({r["L"] for r in report if r["kernel"] == "radix2"}) if lengths is None else lengths
    out = []
    for name in gpus:
        g = _gpu(name)
        cc = list(g.cc)
        for L in lengths:
            row = {"gpu": name, "L": L, "B": B, "H": H}
            N = kc.fft_size(L)
            r2 = _pick(report, kernel="radix2", L=L, cc=cc, dtype="float32")
            p = kc.default_block(N // 2)
            mon = _pick(report, kernel="monarch", L=L, cc=cc, dtype="float32", kind="conv", block=p,
                        cluster_max=kc.default_cluster_max(g.cc))
            tp = _pick(report, kernel="monarch", L=L, cc=cc, dtype="float32", kind="conv", block=p,
                       passes=3)
            if tp is not None and tp is not mon:          # the three passes, for comparison
                row["three_pass_s"] = monarch_time(g, tp, B=B, H=H)["time"]
                row["three_pass_speedup"] = fft_conv_bound(g, B, H, L) / row["three_pass_s"]
            bound = fft_conv_bound(g, B, H, L)
            row["fft_bound_s"] = bound
            if r2 is not None:
                traffic = (io_model.fused_conv if N <= 4096 else io_model.three_pass_traffic)(B, H, L)
                # radix-2, generous to it: its loops only (``hot``: the straight-line code and the
                # slow paths left out) and full occupancy, issue spread evenly over all SMs
                issue = r2["hot"] * R * L / 32 / g.issue_per_s
                row.update(radix2_sass=r2["hot"], radix2_s=max(issue, traffic.bytes / g.hbm_bytes_per_s))
            C = (mon or {}).get("plan", {}).get("cluster", 1)
            fused = mon is not None and mon.get("passes", 1) == 1 and C == 1
            if fused and kc.monarch_smem_bytes(N // 2, np.float32, "conv",
                                                roots=mon["plan"]["roots"]) > g.smem_per_block:
                mon = None                       # a fused row made for another GPU's budget
            if mon is not None:
                t = monarch_time(g, mon, B=B, H=H)
                row.update(path="monarch fused" if fused else f"monarch cluster of {C}" if C > 1
                           else "monarch three-pass",
                           cuda_sass=mon["per_element"], cuda_s=t["time"], bound=t["bound"],
                           pass_s=[p["time"] for p in t["passes"]],
                           pass_bound=[p["bound"] for p in t["passes"]],
                           pass_issue_s=[p["issue"] for p in t["passes"]],
                           pass_hbm_s=[p["hbm"] for p in t["passes"]])
                # the instructions alone, as if every byte were free (say, the intermediate
                # kept in the L2): no schedule of these kernels runs faster than this
                row["issue_only_s"] = sum(row["pass_issue_s"])
                row["issue_only_speedup"] = bound / row["issue_only_s"]
            elif "radix2_s" in row:
                row.update(path="radix-2 three-pass" if N > 4096 else "radix-2 fused",
                           cuda_sass=row["radix2_sass"], cuda_s=row["radix2_s"], bound="issue")
            if "cuda_s" in row:
                row["speedup"] = bound / row["cuda_s"]
            out.append(row)
    return out


def model_table(rows=None) -> str:
    """``model_rows`` as a text table (microseconds; three passes: each kernel's time too, and
    the sum of their instruction times alone, with its speedup: the ceiling if no byte cost
    anything; cluster rows: the three passes they replace, their time and speedup)."""
    rows = model_rows() if rows is None else rows
    if not isinstance(rows, list):
        raise TypeError(f"rows must be a list (from model_rows), got {type(rows).__name__}")
    head = (f"{'GPU':<6}{'L':>7}  {'cuda backend path':<20}{'SASS/elt':>9}{'cuda us':>9}"
            f"{'bound':>7}{'torch.fft >= us':>16}{'speedup':>9}{'radix-2 us':>11}  three passes: us, bound"
            f" | issue alone  (cluster rows: the three passes instead)")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "cuda_s" not in r:
            continue
        passes = " + ".join(f"{t * 1e6:.1f} {b}" for t, b in zip(r.get("pass_s", ()), r.get("pass_bound", ())))
        lines.append((f"{r['gpu']:<6}{r['L']:>7}  {r['path']:<20}{r['cuda_sass']:>9.0f}"
                      f"{r['cuda_s'] * 1e6:>9.1f}{r['bound']:>7}{r['fft_bound_s'] * 1e6:>16.1f}"
                      f"{r['speedup']:>9.2f}{r.get('radix2_s', math.nan) * 1e6:>11.1f}  "
                      + (f"{passes} | {r['issue_only_s'] * 1e6:.1f} us, {r['issue_only_speedup']:.2f}x"
                         if len(r.get("pass_s", ())) > 1 else
                         f"(three passes: {r['three_pass_s'] * 1e6:.1f} us, {r['three_pass_speedup']:.2f}x)"
                         if "three_pass_s" in r else "")).rstrip())
    return "\n".join(lines)


def model_json_path() -> str:
    """course/results/cuda/perf_model.json, beside the SASS report."""
    import os

    from . import cuda as kc
    return os.path.join(os.path.dirname(kc.SASS_REPORT), "perf_model.json")


def write_model(path: str | None = None) -> list[dict]:
    """Compute ``model_rows`` from the committed SASS report and write them as JSON."""
    import json
    rows = model_rows()
    path = model_json_path() if path is None else path
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, got {type(path).__name__}")
    with open(path, "w") as f:
        json.dump({"model": "kernels.perf_model (see its docstring)",
                   "gpus": {k: {**g.__dict__, "cc": list(g.cc)} for k, g in GPUS.items()},
                   "warps_for_full_issue": WARPS_FOR_FULL_ISSUE, "rows": rows}, f, indent=1)
    return rows
