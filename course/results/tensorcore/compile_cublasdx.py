"""Does a numba-cuda kernel that calls cuBLASDx (nvmath-python's device matmul) compile for
sm_80 / sm_90 on a machine with no GPU, and does its SASS use the tensor cores?

NOT part of the library and NOT run by the tests: it needs a throwaway venv (course page 5,
"Tensor cores", has the exact commands and versions), e.g.

    python3 -m venv /tmp/nvm
    /tmp/nvm/bin/pip install "numba-cuda[cu13]==0.30.4" numba==0.68.1 numpy==2.4.6 \\
        nvidia-cuda-nvcc==13.5.37 nvidia-cuda-nvdisasm==13.5.37 cffi "cuda-toolkit[cccl,nvrtc]==13.*" \\
        nvidia-libmathdx-cu13==0.4.2.37
    /tmp/nvm/bin/pip install --no-deps nvmath-python==1.0.1
    /tmp/nvm/bin/python course/results/tensorcore/compile_cublasdx.py --out course/results/tensorcore

The kernel is one tensor-core DFT-block step: a 16-point complex DFT block F = Fr + i Fi applied
to 16 complex columns X as ONE real matmul, [Yr; Yi] = [[Fr, -Fi], [Fi, Fr]] @ [Xr; Xi]
(m, n, k) = (32, 16, 32), by one warp: the block (already in the format) and the columns
(float32 in global memory, rounded to the format on their way into shared memory) are staged in
shared memory, cuBLASDx's Block-level matmul (execution="Block") multiplies them with fp32 sums,
and Y (fp32) is written back. Formats: fp16, bf16, tf32 (inputs) with fp32 accumulation, and
fp32 inputs for comparison.

Without a GPU, four things have to be worked around, each marked PATCH below:
1. nvmath's numba lowering asks the CUDA driver for the current device's compute capability
   (nvmath.device.common_cuda.get_default_code_type -> cuInit): no driver, ValueError. We
   name the target instead.
2. numba-cuda compiles each @overload implementation as a device function for
   get_current_device().compute_capability: no driver, CudaSupportError. We name it.
3. nvmath-python 1.0.1's Python front end maps only numpy dtypes (fp16/fp32/fp64/ints) to
   cuBLASDx precisions; libmathdx itself has BF16 and TF32 (CommondxPrecision). We register
   stand-in types for them (their operands live in uint16 / uint32 shared arrays as bit
   patterns: numba-cuda cannot make a shared array of its bfloat16 type).
4. numba-cuda's own LTO flag is not set by the private compile entry point used here, so the
   library is linked with nvJitLink in LTO mode by setting it.
Nothing here launches a kernel: there is no GPU, and numba's simulator cannot import
nvmath.device (AttributeError: module 'numba.cuda' has no attribute 'const').
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import resource
import subprocess
import sys
import time

FMTS = ("fp16", "bf16", "tf32", "fp32")
SMS = (80, 90)
M, N, K = 32, 16, 32           # [Fr -Fi; Fi Fr] (32 x 32) @ [Xr; Xi] (32 x 16)


def compile_one(sm: int, fmt: str, out_dir: str) -> dict:
    import numpy as np
    import nvmath
    import nvmath.device as d
    import nvmath.device.common_backend as cmb
    import nvmath.device.common_numba as cnu
    import nvmath.device.cublasdx_backend as cbb
    import nvmath.device.cublasdx_numba as cbn
    from numba import cuda, types
    from numba.cuda import compiler
    from numba.cuda import dispatcher as ndisp
    from nvmath.bindings import mathdx

    cc = (sm // 10, sm % 10)
    arch = "a" if sm >= 90 else ""
    # PATCH 1: the code type nvmath would ask the driver for
    cbn.get_default_code_type = lambda: d.CodeType("lto", d.ComputeCapability(cc[0], cc[1], arch))

    # PATCH 2: the device numba-cuda would ask the driver for
    class _Target:
        compute_capability = cc
    ndisp.get_current_device = lambda: _Target()

    # PATCH 3: bf16 and tf32 as cuBLASDx precisions, stored as bit patterns
    class tfloat32(np.uint32):
        """stand-in for cuBLASDx's tfloat32_t (32 bits)"""

    class bfloat16(np.uint16):
        """stand-in for __nv_bfloat16 (16 bits)"""

    extra = {"tf32": (tfloat32, mathdx.CommondxPrecision.TF32, mathdx.CommondxValueType.R_32TF, types.uint32),
             "bf16": (bfloat16, mathdx.CommondxPrecision.BF16, mathdx.CommondxValueType.R_16BF, types.uint16)}
    for T, P, V, IR in extra.values():
        cmb.NP_TYPES_TO_MATHDX_PRECISION[T] = P
        cmb.MATHDX_TYPES_TO_NP[V] = T
        cmb.NP_TYPES_TO_MATHDX_TYPES[T] = V
        cbb._ACCEPTED_PRECISION.append(T)
        cnu.NUMBA_FE_TYPES_TO_NUMBA_IR[T] = IR

    prec, ab = {"fp16": (np.float16, types.float16), "fp32": (np.float32, types.float32),
                "bf16": (bfloat16, types.uint16), "tf32": (tfloat32, types.uint32)}[fmt]
    t0 = time.time()
    MM = d.Matmul(size=(M, N, K), precision=(prec, prec, np.float32), data_type="real", sm=sm,
                  block_size=32, execution="Block", arrangement=("row_major", "col_major", "col_major"))
    to_fmt = _converter(fmt)

    def dft_block_step(F, x, y):
        """F: (32, 32) block in the format (bits for bf16/tf32); x: (32, 16) float32 bits
        (uint32); y: (32, 16) float32 out."""
        sF = cuda.shared.array(shape=(M, K), dtype=ab)            # row-major
        sX = cuda.shared.array(shape=(N, K), dtype=ab)            # column-major (K, N)
        sY = cuda.shared.array(shape=(N, M), dtype=types.float32)  # column-major (M, N)
        t = cuda.threadIdx.x
        for i in range(t, M * K, 32):
            sF[i // K, i % K] = F[i // K, i % K]
        for i in range(t, K * N, 32):
            sX[i % N, i // N] = to_fmt(x[i // N, i % N])
        for i in range(t, M * N, 32):
            sY[i % N, i // N] = 0
        cuda.syncthreads()
        MM.execute(1.0, sF, sX, 0.0, sY)
        cuda.syncthreads()
        for i in range(t, M * N, 32):
            y[i // N, i % N] = sY[i % N, i // N]

    tF = types.Array(ab, 2, "C")
    sig = (tF, types.Array(types.uint32, 2, "C"), types.Array(types.float32, 2, "C"))
    lib, _ = compiler._compile_pyfunc_with_fixup(dft_block_step, sig, device=False, cc=cc, abi="numba", lto=True,
                                                 debug=False, lineinfo=False, fastmath=False, opt=True,
                                                 abi_info=None, forceinline=False, launch_bounds=None)
    lib._lto = True                                   # PATCH 4: link with nvJitLink in LTO mode
    obj = lib.get_cubin(cc=cc)
    cubin = bytes(obj.code) if hasattr(obj, "code") else bytes(obj)
    seconds = time.time() - t0
    nvdisasm = glob.glob(os.path.join(os.path.dirname(nvmath.__path__[0]), "nvidia", "cu13", "bin", "nvdisasm"))[0]
    path = os.path.join(out_dir, f"dft_block_sm{sm}_{fmt}.cubin")
    with open(path, "wb") as f:
        f.write(cubin)
    sass = subprocess.run([nvdisasm, "-c", path], capture_output=True, text=True, check=True).stdout
    os.remove(path)                                   # 2 MB, mostly cuBLASDx's symbol table
    ops = [m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", sass)]
    ops = [o for o in ops if o != "NOP"]
    mma = collections.Counter(o for o in ops if "MMA" in o)
    lines = sass.splitlines()
    first = next((i for i, l in enumerate(lines) if "MMA" in l), None)
    excerpt = [re.sub(r"\s+", " ", l).strip() for l in lines[max(0, (first or 0) - 14):(first or 0) + 10]]
    return {"sm": sm, "fmt": fmt, "compiled": True, "seconds": round(seconds, 1), "cubin_bytes": len(cubin),
            "instructions": len(ops), "mma": dict(mma), "ffma": sum(o.startswith("FFMA") for o in ops),
            "excerpt_around_first_mma": excerpt if first is not None else []}


def _converter(fmt: str):
    """A device function: float32 bits (uint32) -> the operand in ``fmt``, rounded to nearest
    even (bf16, tf32: integer arithmetic on the bits; fp16: numba's float32 -> float16 cast)."""
    from numba import cuda, types
    from numba.cuda.extending import intrinsic

    @intrinsic
    def as_float32(typingctx, b):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(types.float32))
        return types.float32(types.uint32), codegen

    if fmt == "bf16":        # keep the high 16 bits, rounded
        def conv(b):
            return types.uint16((b + 0x7FFF + ((b >> 16) & 1)) >> 16)
    elif fmt == "tf32":      # clear the 13 low fraction bits, rounded
        def conv(b):
            return types.uint32((b + 0xFFF + ((b >> 13) & 1)) & 0xFFFFE000)
    elif fmt == "fp16":
        def conv(b):
            return types.float16(as_float32(b))
    else:
        def conv(b):
            return as_float32(b)
    return cuda.jit(device=True, inline="always")(conv)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for cublasdx_compile.json")
    p.add_argument("--sm", type=int, nargs="+", default=list(SMS))
    p.add_argument("--fmt", nargs="+", default=list(FMTS), choices=FMTS)
    p.add_argument("--one", nargs=2, metavar=("SM", "FMT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.one:                                          # a child: one configuration, JSON on stdout
        print(json.dumps(compile_one(int(a.one[0]), a.one[1], a.out)))
        return 0
    import importlib.metadata as md
    versions = {n: md.version(n) for n in ("nvmath-python", "nvidia-libmathdx-cu13", "numba-cuda", "numba",
                                           "nvidia-nvjitlink", "nvidia-cuda-nvrtc", "nvidia-cuda-nvdisasm")}
    rows = []
    for sm in a.sm:
        for fmt in a.fmt:
            proc = subprocess.Popen([sys.executable, __file__, "--out", a.out, "--one", str(sm), fmt],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = proc.communicate()
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode == 0:
                row = json.loads(out.strip().splitlines()[-1])
            else:
                row = {"sm": sm, "fmt": fmt, "compiled": False, "error": err.strip().splitlines()[-1:]}
            row["peak_rss_mib_so_far"] = round(ru.ru_maxrss / 1024)
            rows.append(row)
            print(sm, fmt, {k: row.get(k) for k in ("compiled", "seconds", "instructions", "mma", "ffma", "error")},
                  flush=True)
    with open(os.path.join(a.out, "cublasdx_compile.json"), "w") as f:
        json.dump({"command": "python course/results/tensorcore/compile_cublasdx.py " + " ".join(sys.argv[1:]),
                   "kernel": "one 16-point complex DFT block on 16 columns: real (32 x 32) @ (32 x 16), one warp",
                   "versions": versions, "rows": rows}, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
