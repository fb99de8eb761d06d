"""Float32 error of the Monarch kernel with small root tables, in numba's CUDA simulator.

Run from the repository root (about a minute on 2 cores):

    NUMBA_ENABLE_CUDASIM=1 .venv/bin/python course/results/cuda/twiddle_accuracy.py

For L = 4096, three seeds, the largest relative error (max |y - y_ref| / max |y_ref|) of
``cuda_conv`` in float32 against numpy's float64 convolution, with a root table of Q = 64
values (smem_bytes=33792: three of six factors take their twiddles from two tables) and with
Q = M (one table). The script uses only ``cuda_conv`` and ``monarch_plan``, so the same file
runs in a checkout of an older commit: course page 05 quotes it on 0b36bde (two lookups per
twiddle) and on the commit that made the twiddles powers of one lookup.
"""
import numpy as np
import torch

from longconv_edu.kernels.cuda import REAL_OF, cuda_conv, monarch_plan

L = 4096
for block, smem in ((4, 33792), (8, 33792), (8, None)):
    errs = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        u, k = torch.randn(1, 1, L, generator=g), torch.randn(1, L, generator=g) / L ** 0.5
        kw = {} if smem is None else {"smem_bytes": smem}
        plan = monarch_plan(L, REAL_OF[torch.float32], smem_bytes=smem or 227 * 1024, block=block)
        y = cuda_conv(u, k, threads=64, block=block, **kw).double().numpy()[0, 0]
        ref = np.convolve(u.double().numpy()[0, 0], k.double().numpy()[0])[:L]
        errs.append(float(np.abs(y - ref).max() / np.abs(ref).max()))
    print(f"L={L} p={block} Q={plan.roots} M={plan.M}: largest relative error {max(errs):.2g}")
