"""The bad-input table: for every public function of the rungs floor (and of the lab's models,
checkpoints, training loop and plots, and the course's animations), the inputs it must refuse,
the exception type, and the message (a regex) it must give -- in the spirit of torch's OpInfo
``error_inputs``. A meta-test fails when a public function has no row, so a new function must
add its rows here; every module of the package is either in ``RUNG_MODULES`` or says in
``ELSEWHERE`` where its bad inputs are tested. Kernels enter through the dispatch registry too.

Also here: odd but valid layouts (non-contiguous, stride-0, empty batches) give the oracle's
answer for every backend, and NaN propagates instead of vanishing.
"""

import importlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from oracles import causal_conv_np, rel_err

from longconv_edu import butterfly, conv, dispatch, fft, io_model, layers, learned, params, regularize, timing
from longconv_edu.dispatch import get_backend

# the modules of floor 1 (the rungs) whose __all__ this table must cover, and the kernels' entry points
RUNG_MODULES = [
    "conv",
    "fft",
    "butterfly",
    "io_model",
    "regularize",
    "params",
    "layers",
    "learned",
    "dispatch",
    "timing",
    "kernels.cpu",
    "kernels.trace",
    "tensorcore",
    # floors 2 and 3
    "lab.models",
    "lab.checkpoints",
    "lab.train",
    "lab.viz",
    "course.animations",
]
# the modules whose bad inputs are tested elsewhere, each with where and why (every module of the
# package is in one list or the other: test_every_module_is_in_the_table_or_says_why_not)
ELSEWHERE = {
    "_checks": "the checks themselves: tests/test_checks.py",
    "kernels": "a package docstring, no functions",
    "kernels.cuda": "GPU kernel tooling (cuda_conv's rows are here); tests/test_kernels_cuda*.py",
    "kernels.ptx": "ptxas/nvdisasm tooling: tests/test_kernels_cuda.py",
    "kernels.perf_model": "the GPU performance model: tests/test_kernels_cuda.py",
    "kernels.cuda_check": "the GPU check script (a command line): tests/test_kernels_cuda.py",
    "kernels.dsmem": "Numba intrinsics (typed at compile time) and cluster_dims: "
                     "tests/test_kernels_cuda.py (test_bad_cluster_arguments_are_refused)",
    "lab": "a package docstring, no functions",
    "lab.data": "datasets and atomic writes: tests/test_data.py (test_bad_input)",
    "lab.experiments": "the experiments' tables: tests/test_train.py",
    "lab.distributed": "DDP plumbing the training loop calls: tests/test_ddp.py",
    "lab.bench": "a command line: every option's error in tests/test_bench.py",
    "lab.cli": "a command line: tests/test_train.py (test_cli_bad_names_list_the_valid_ones)",
    "course": "a package docstring, no functions",
    "course.widgets": "slider callbacks that clamp instead of raising: tests/test_widgets.py",
    "course.exercises": "the exercise registry and checkers: tests/test_exercises.py",
    "course.exercises.*": "one module per rung registering exercises: tests/test_exercises.py",
    "__main__": "the command line's dispatcher: tests/test_bench.py, tests/test_train.py",
}
# public names that are data or plain records, not functions taking input (nothing to refuse)
NOT_FUNCTIONS = {
    "fft.COMPLEX_OF": "a dict constant",
    "regularize.PAPER_SETTINGS": "a dict constant",
    "dispatch.AUTO_RULES": "a dict constant",
    "layers.DEFAULT_LAM": "a float constant",
    "io_model.Traffic": "a plain record the io_model functions build",
    "kernels.trace.Counts": "a plain record the tracer builds",
    "kernels.trace.Race": "a plain record the tracer builds",
    "kernels.trace.LaunchTrace": "a plain record the tracer builds",
    "kernels.trace.Trace": "a plain record the tracer builds",
    "kernels.trace.CountingArray": "the array type the tracer hands a kernel (not called by users)",
    "kernels.trace.SECTOR_BYTES": "an int constant",
    "kernels.trace.WARP": "an int constant",
    "tensorcore.FORMATS": "a dict constant",
    "lab.models.MODELS": "a tuple constant",
    "lab.models.REGULARIZERS": "a dict constant",
    "lab.checkpoints.CHECKPOINT_FORMAT": "a str constant",
    "lab.checkpoints.CheckpointError": "the exception class load_checkpoint raises",
    "lab.train.CHECKPOINT_NAME": "a str constant",
    "lab.train.METRICS_NAME": "a str constant",
    "lab.train.KERNELS_NAME": "a str constant",
    "lab.train.MODEL_FIELDS": "a tuple constant",
    "lab.viz.COURSE_STYLE": "a dict constant",
    "lab.viz.PNG_COLOURS": "an int constant",
    "lab.viz.use_course_style": "takes no input",
    "lab.viz.as_numpy": "converts anything NumPy can (plots check the result)",
    "course.animations.DPI": "an int constant",
}

ROWS: list[tuple[str, str, object, type, str]] = []


def row(fn_name: str, label: str, call, exc: type, match: str) -> None:
    """One bad input: ``call()`` must raise ``exc`` with a message matching ``match``."""
    ROWS.append((fn_name, label, call, exc, match))


def T(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


U, K = T(2, 3, 8), T(3, 8)
U64, K64 = U.double(), K.double()
C64 = [fft.dft_matrix(4, dtype=torch.complex64), fft.dft_matrix(4, dtype=torch.complex64)]

# ----------------------------------------------------------------------------- the convolutions
CONV_FNS = {
    "conv.direct_conv": conv.direct_conv,
    "conv.toeplitz_conv": conv.toeplitz_conv,
    "conv.fft_conv": conv.fft_conv,
    "conv.circular_conv": conv.circular_conv,
    "butterfly.butterfly_conv": butterfly.butterfly_conv,
    "butterfly.three_pass_conv": butterfly.three_pass_conv,
    "butterfly.radix2_conv": butterfly.radix2_conv,
    "learned.learned_butterfly_conv": learned.learned_butterfly_conv,
    "dispatch.long_conv": dispatch.long_conv,
    "kernels.cpu.cpu_conv": lambda u, k: get_backend("numba")(u, k),
    "kernels.cuda.cuda_conv": lambda u, k: get_backend("cuda")(u, k),
}
for name, f in CONV_FNS.items():
    row(name, "u 2-D", lambda f=f: f(T(3, 8), K), ValueError, r"u must be 3-D \(B, H, L\), got 2-D shape \(3, 8\)")
    row(name, "u 4-D", lambda f=f: f(T(1, 2, 3, 8), K), ValueError, r"u must be 3-D \(B, H, L\), got 4-D")
    row(name, "k 1-D", lambda f=f: f(U, T(8)), ValueError, r"k must be 2-D \(H, Lk\), got 1-D shape \(8,\)")
    row(
        name,
        "u int64",
        lambda f=f: f(U.long(), K.long()),
        TypeError,
        r"u must have dtype torch.float32 or torch.float64, got torch.int64 \(cast with .float\(\)",
    )
    row(name, "u float16", lambda f=f: f(U.half(), K.half()), TypeError, r"u must have dtype .* got torch.float16")
    row(
        name,
        "u complex",
        lambda f=f: f(U.to(torch.complex64), K),
        TypeError,
        r"u must have dtype .* got torch.complex64 .*would silently drop the imaginary part",
    )
    row(name, "u bool", lambda f=f: f(U > 0, K), TypeError, r"u must have dtype .* got torch.bool")
    row(
        name,
        "u a NumPy array",
        lambda f=f: f(U.numpy(), K),
        TypeError,
        r"u must be a torch.Tensor, got ndarray .*torch.from_numpy",
    )
    row(name, "k a list", lambda f=f: f(U, K.tolist()), TypeError, r"k must be a torch.Tensor, got list")
    row(
        name,
        "dtypes differ",
        lambda f=f: f(U, K64),
        TypeError,
        r"k has dtype torch.float64 but u has dtype torch.float32; they must match",
    )
    row(name, "H differs", lambda f=f: f(U, T(2, 8)), ValueError, r"k has H=2 channels .* but u has H=3")
    row(name, "Lk > L", lambda f=f: f(U, T(3, 9)), ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=9")
    row(name, "Lk = 0", lambda f=f: f(U, T(3, 0)), ValueError, r"k must have length 1 <= Lk <= L = 8, got Lk=0")
    row(name, "L = 0", lambda f=f: f(T(2, 3, 0), T(3, 1)), ValueError, r"u must have sequence length L >= 1")
    row(
        name,
        "u on meta device",
        lambda f=f: f(U.to("meta"), K),
        ValueError,
        r"k is on device cpu but u is on device meta",
    )

row(
    "conv.bidirectional_conv",
    "k of length L",
    lambda: conv.bidirectional_conv(U, K),
    ValueError,
    r"k must have length 2L = 16 for a bidirectional convolution .* got Lk=8",
)
row(
    "conv.bidirectional_conv", "u 2-D", lambda: conv.bidirectional_conv(T(3, 8), T(3, 16)), ValueError, r"u must be 3-D"
)
row(
    "conv.bidirectional_conv",
    "int",
    lambda: conv.bidirectional_conv(U.long(), T(3, 16).long()),
    TypeError,
    r"u must have dtype",
)
row("conv.bidirectional_conv", "H differs", lambda: conv.bidirectional_conv(U, T(2, 16)), ValueError, r"k has H=2")
row(
    "conv.direct_conv",
    "jit=1",
    lambda: conv.direct_conv(U, K, jit=1),
    TypeError,
    r"jit must be True or False, got int 1",
)
row("conv.direct_conv", "jit='yes'", lambda: conv.direct_conv(U, K, jit="yes"), TypeError, r"jit must be True or False")
row(
    "conv.direct_conv",
    "L = 2^27 (stride-0 input)",
    lambda: conv.direct_conv(torch.zeros(1, 1, 1).expand(1, 1, 2**27), torch.zeros(1, 1).expand(1, 2**27)),
    ValueError,
    r"direct_conv\(jit=False\) .* would take ~.* s .*over the 600 s limit",
)
row(
    "conv.direct_conv",
    "typo in a keyword",
    lambda: conv.direct_conv(U, K, jti=True),
    TypeError,
    r"unexpected keyword argument 'jti'",
)
row(
    "conv.toeplitz_conv",
    "L = 2^27 (stride-0 input)",
    lambda: conv.toeplitz_conv(torch.zeros(1, 1, 1).expand(1, 1, 2**27), torch.zeros(1, 1).expand(1, 2**27)),
    ValueError,
    r"toeplitz with H=1, L=134217728 would need ~.* PiB of memory",
)
row("conv.toeplitz", "k 3-D", lambda: conv.toeplitz(T(1, 3, 8), 8), ValueError, r"k must be 1-D \(Lk,\) or 2-D")
row("conv.toeplitz", "L float", lambda: conv.toeplitz(T(8), 8.0), TypeError, r"L must be an int, got float 8.0")
row("conv.toeplitz", "L = 0", lambda: conv.toeplitz(T(1), 0), ValueError, r"L must be >= 1, got 0")
row(
    "conv.toeplitz",
    "Lk > L",
    lambda: conv.toeplitz(T(9), 8),
    ValueError,
    r"k must have length 1 <= Lk <= L = 8, got Lk=9",
)
row("conv.toeplitz", "k int", lambda: conv.toeplitz(torch.arange(4), 8), TypeError, r"k must have dtype")
row("conv.toeplitz", "L = 2^27", lambda: conv.toeplitz(T(1), 2**27), ValueError, r"PiB of memory")
row(
    "conv.fft_conv",
    "fft_size too small",
    lambda: conv.fft_conv(U, K, fft_size=14),
    ValueError,
    r"fft_size must be >= L \+ Lk - 1 = 15 .* use circular_conv",
)
row(
    "conv.fft_conv", "fft_size float", lambda: conv.fft_conv(U, K, fft_size=16.0), TypeError, r"fft_size must be an int"
)
row(
    "conv.fft_conv",
    "fft_size True",
    lambda: conv.fft_conv(U, K, fft_size=True),
    TypeError,
    r"fft_size must be an int, got bool True",
)
row(
    "conv.direct_conv_seconds",
    "L a string",
    lambda: conv.direct_conv_seconds(1, 1, "8", 8),
    TypeError,
    r"L must be an int, got str",
)
row("conv.direct_conv_seconds", "B = -1", lambda: conv.direct_conv_seconds(-1, 1, 8, 8), ValueError, r"B must be >= 0")
row(
    "conv.direct_conv_seconds",
    "Lk > L",
    lambda: conv.direct_conv_seconds(1, 1, 8, 9),
    ValueError,
    r"k must have length 1 <= Lk <= L = 8",
)
row(
    "conv.direct_conv_seconds",
    "jit=None",
    lambda: conv.direct_conv_seconds(1, 1, 8, 8, jit=None),
    TypeError,
    r"jit must be True or False",
)
row(
    "conv.toeplitz_bytes", "L a string", lambda: conv.toeplitz_bytes(1, "8", 4), TypeError, r"L must be an int, got str"
)
row("conv.toeplitz_bytes", "itemsize 0", lambda: conv.toeplitz_bytes(1, 8, 0), ValueError, r"itemsize must be >= 1")

# ----------------------------------------------------------------------------- fft.py
SIGNAL_FNS = {
    "fft.fft_recursive": fft.fft_recursive,
    "fft.fft_iterative": fft.fft_iterative,
    "fft.monarch_dft": lambda x, **kw: fft.monarch_dft(x, (x.shape[-1], 1) if x.ndim else (1, 1), **kw),
}
for name, f in SIGNAL_FNS.items():
    row(name, "int signal", lambda f=f: f(torch.arange(8)), TypeError, r"x must have dtype .* got torch.int64")
    row(name, "bool signal", lambda f=f: f(torch.ones(8, dtype=torch.bool)), TypeError, r"x must have dtype")
    row(name, "float16 signal", lambda f=f: f(T(8).half()), TypeError, r"x must have dtype .* got torch.float16")
    row(name, "NumPy signal", lambda f=f: f(np.zeros(8)), TypeError, r"x must be a torch.Tensor, got ndarray")
    row(name, "0-D signal", lambda f=f: f(torch.tensor(1.0)), ValueError, r"x must have at least 1 dimension")
    row(name, "empty last axis", lambda f=f: f(T(3, 0)), ValueError, r"x must have length >= 1 along its last axis")
    row(name, "inverse=1", lambda f=f: f(T(8), inverse=1), TypeError, r"inverse must be True or False, got int 1")
for name in ("fft.fft_recursive", "fft.fft_iterative"):
    f = SIGNAL_FNS[name]
    row(
        name,
        "length 12",
        lambda f=f: f(T(2, 12)),
        ValueError,
        r"x must have a power-of-two length .* got N=12 .*zero-pad it to 16",
    )
row("fft.fft_iterative", "jit='no'", lambda: fft.fft_iterative(T(8), jit="no"), TypeError, r"jit must be True or False")
row(
    "fft.fft_iterative",
    "jit on meta",
    lambda: fft.fft_iterative(T(8).to("meta"), jit=True),
    ValueError,
    r"fft_iterative\(jit=True\) runs on the CPU",
)
row("fft.butterfly_stage", "stage 0", lambda: fft.butterfly_stage(T(8), 0), ValueError, r"stage must be >= 1, got 0")
row(
    "fft.butterfly_stage",
    "stage 4 of N=8",
    lambda: fft.butterfly_stage(T(8), 4),
    ValueError,
    r"stage must be <= 3, got 4",
)
row("fft.butterfly_stage", "N = 1", lambda: fft.butterfly_stage(T(1), 1), ValueError, r"y must have length >= 2")
row(
    "fft.butterfly_stage",
    "N = 6",
    lambda: fft.butterfly_stage(T(6), 1),
    ValueError,
    r"y must have a power-of-two length",
)
row("fft.butterfly_stage", "stage float", lambda: fft.butterfly_stage(T(8), 1.0), TypeError, r"stage must be an int")
for name, f in {"fft.dft_matrix": fft.dft_matrix, "fft.twiddles": fft.twiddles}.items():
    row(name, "n = 0", lambda f=f: f(0), ValueError, r"n must be >= 1, got 0")
    row(name, "n float", lambda f=f: f(4.0), TypeError, r"n must be an int, got float 4.0")
    row(
        name,
        "real dtype",
        lambda f=f: f(4, dtype=torch.float64),
        TypeError,
        r"dtype must be torch.complex64 or torch.complex128, got torch.float64",
    )
    row(name, "inverse='yes'", lambda f=f: f(4, inverse="yes"), TypeError, r"inverse must be True or False")
row("fft.twiddles", "n = 6", lambda: fft.twiddles(6), ValueError, r"n must be a power of two, got 6")
row("fft.twiddle_grid", "n2 = 0", lambda: fft.twiddle_grid(4, 0), ValueError, r"n2 must be >= 1, got 0")
row("fft.twiddle_grid", "n1 float", lambda: fft.twiddle_grid(4.5, 2), TypeError, r"n1 must be an int")
row(
    "fft.twiddle_grid",
    "int dtype",
    lambda: fft.twiddle_grid(2, 2, dtype=torch.int64),
    TypeError,
    r"dtype must be torch.complex64",
)
for name, f in {
    "fft.bit_reversal_permutation": fft.bit_reversal_permutation,
    "fft.butterfly_factors": fft.butterfly_factors,
}.items():
    row(name, "n = 12", lambda f=f: f(12), ValueError, r"n must be a power of two, got 12")
    row(name, "n = 0", lambda f=f: f(0), ValueError, r"n must be >= 1, got 0")
    row(name, "n a string", lambda f=f: f("8"), TypeError, r"n must be an int, got str '8'")
row(
    "fft.butterfly_factors",
    "inverse=None",
    lambda: fft.butterfly_factors(4, inverse=None),
    TypeError,
    r"inverse must be True or False",
)
row("fft.monarch_factors", "N = 12", lambda: fft.monarch_factors(12), ValueError, r"N must be a power of two, got 12")
row(
    "fft.monarch_factors",
    "max_factor = 3",
    lambda: fft.monarch_factors(16, 3),
    ValueError,
    r"max_factor must be a power of two",
)
row("fft.monarch_factors", "max_factor = 1", lambda: fft.monarch_factors(16, 1), ValueError, r"max_factor must be >= 2")
row("fft.monarch_factors", "N float", lambda: fft.monarch_factors(16.0), TypeError, r"N must be an int")
row(
    "fft.monarch_dft",
    "factors an int",
    lambda: fft.monarch_dft(T(16), 16),
    TypeError,
    r"factors must be a tuple of 2 or 3 ints such as \(N1, N2\), got 16",
)
row(
    "fft.monarch_dft",
    "4 factors",
    lambda: fft.monarch_dft(T(16), (2, 2, 2, 2)),
    ValueError,
    r"factors must hold 2 or 3 sizes",
)
row(
    "fft.monarch_dft",
    "wrong product",
    lambda: fft.monarch_dft(T(16), (4, 2)),
    ValueError,
    r"factors must multiply to the transform length N = 16 .* product 8",
)
row("fft.monarch_dft", "factor 0", lambda: fft.monarch_dft(T(16), (16, 0)), ValueError, r"factors\[1\] must be >= 1")
row(
    "fft.monarch_dft",
    "blocks not a list",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=C64[0]),
    TypeError,
    r"blocks must be a list of complex tensors, one block per factor",
)
row(
    "fft.monarch_dft",
    "one block too few",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=C64[:1]),
    ValueError,
    r"blocks must hold one block per factor, 2 for factors \(4, 4\), got 1",
)
row(
    "fft.monarch_dft",
    "block of the wrong size",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=[fft.dft_matrix(2, dtype=torch.complex64), C64[1]]),
    ValueError,
    r"blocks\[0\] must be \(4, 4\) or \(H, 4, 4\) for factor 4, got shape \(2, 2\)",
)
row(
    "fft.monarch_dft",
    "complex128 blocks for float32 x",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=[fft.dft_matrix(4), C64[1]]),
    TypeError,
    r"blocks\[0\] must have dtype torch.complex64, got torch.complex128 \(convert with .to\(torch.complex64\)\)",
)
row(
    "fft.monarch_dft",
    "real blocks",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=[C64[0].real, C64[1]]),
    TypeError,
    r"blocks\[0\] must have dtype torch.complex64, got torch.float32 \(convert with .to\(torch.complex64\)\)",
)
row(
    "fft.monarch_dft",
    "per-channel blocks, 1-D x",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=[C64[0].expand(2, 4, 4), C64[1]]),
    ValueError,
    r"blocks are per channel \(H, n, n\), so x must be \(..., H, N\)",
)
row(
    "fft.monarch_dft",
    "per-channel blocks, H differs",
    lambda: fft.monarch_dft(T(3, 16), (4, 4), blocks=[C64[0].expand(2, 4, 4), C64[1]]),
    ValueError,
    r"blocks\[0\] has 2 channel blocks .* the input has H = 3",
)
row(
    "fft.monarch_dft",
    "blocks on meta",
    lambda: fft.monarch_dft(T(16), (4, 4), blocks=[C64[0].to("meta"), C64[1]]),
    ValueError,
    r"blocks\[0\] is on device meta but the input is on cpu",
)
row(
    "fft.four_step_stages",
    "2-D x",
    lambda: fft.four_step_stages(T(2, 16), 4, 4),
    ValueError,
    r"x must be 1-D \(one signal\)",
)
row(
    "fft.four_step_stages",
    "wrong split",
    lambda: fft.four_step_stages(T(16), 4, 3),
    ValueError,
    r"factors must multiply to .* N = 16",
)
row(
    "fft.four_step_stages",
    "int x",
    lambda: fft.four_step_stages(torch.arange(16), 4, 4),
    TypeError,
    r"x must have dtype",
)
row("fft.fft_size", "L = 0", lambda: fft.fft_size(0), ValueError, r"L must be >= 1, got 0")
row("fft.fft_size", "L float", lambda: fft.fft_size(8.0), TypeError, r"L must be an int, got float")
row("fft.next_power_of_two", "n = 0", lambda: fft.next_power_of_two(0), ValueError, r"n must be >= 1, got 0")
row(
    "fft.next_power_of_two", "n None", lambda: fft.next_power_of_two(None), TypeError, r"n must be an int, got NoneType"
)
row("fft.check_factors", "a string", lambda: fft.check_factors("44", 16), TypeError, r"factors must be a tuple")
row(
    "fft.check_factors",
    "one factor",
    lambda: fft.check_factors((16,), 16),
    ValueError,
    r"factors must hold 2 or 3 sizes",
)
row(
    "fft.check_factors",
    "float factor",
    lambda: fft.check_factors((4.0, 4), 16),
    TypeError,
    r"factors\[0\] must be an int",
)
row(
    "fft.check_blocks",
    "a tensor",
    lambda: fft.check_blocks(C64[0], dtype=torch.float32),
    TypeError,
    r"blocks must be a list",
)
row(
    "fft.check_blocks",
    "non-square",
    lambda: fft.check_blocks([C64[0][:, :2], C64[1]], dtype=torch.float32),
    ValueError,
    r"blocks\[0\] must be square \(n, n\)",
)
row(
    "fft.check_blocks",
    "4-D block",
    lambda: fft.check_blocks([C64[0][None, None], C64[1]], dtype=torch.float32),
    ValueError,
    r"blocks\[0\] must be 2-D \(n, n\) shared or 3-D \(H, n, n\) per channel, got 4-D",
)
row(
    "fft.check_blocks",
    "channels disagree",
    lambda: fft.check_blocks([C64[0].expand(2, 4, 4), C64[1].expand(3, 4, 4)], dtype=torch.float32),
    ValueError,
    r"blocks\[1\] has 3 channel blocks .* an earlier block has H = 2",
)

# ----------------------------------------------------------------------------- butterfly.py
row(
    "butterfly.butterfly_kernel_spectrum",
    "Lk > L",
    lambda: butterfly.butterfly_kernel_spectrum(T(3, 9), 8),
    ValueError,
    r"k must have length 1 <= Lk <= L = 8, got Lk=9",
)
row(
    "butterfly.butterfly_kernel_spectrum",
    "L float",
    lambda: butterfly.butterfly_kernel_spectrum(K, 8.0),
    TypeError,
    r"L must be an int",
)
row(
    "butterfly.butterfly_kernel_spectrum",
    "k 3-D",
    lambda: butterfly.butterfly_kernel_spectrum(T(1, 3, 8), 8),
    ValueError,
    r"k must be 2-D",
)
row(
    "butterfly.butterfly_kernel_spectrum",
    "k int",
    lambda: butterfly.butterfly_kernel_spectrum(K.long(), 8),
    TypeError,
    r"k must have dtype",
)
row(
    "butterfly.butterfly_kernel_spectrum",
    "factors too small",
    lambda: butterfly.butterfly_kernel_spectrum(K, 8, factors=(3, 4)),
    ValueError,
    r"factors must multiply to an FFT size N >= 15",
)
row(
    "butterfly.butterfly_kernel_spectrum",
    "factors an int",
    lambda: butterfly.butterfly_kernel_spectrum(K, 8, factors=16),
    TypeError,
    r"factors must be a tuple of 2 or 3 ints",
)
KF = butterfly.butterfly_kernel_spectrum(K, 8)
for name, f in {
    "butterfly.butterfly_conv": butterfly.butterfly_conv,
    "butterfly.three_pass_conv": butterfly.three_pass_conv,
}.items():
    row(name, "k and k_f None", lambda f=f: f(U, None), ValueError, r"k must be a \(H, Lk\) kernel tensor, got None")
    row(
        name,
        "k_f real",
        lambda f=f: f(U, None, k_f=KF.real),
        TypeError,
        r"k_f must have dtype torch.complex64 to go with u of dtype torch.float32",
    )
    row(
        name,
        "k_f complex128",
        lambda f=f: f(U, None, k_f=KF.to(torch.complex128)),
        TypeError,
        r"k_f must have dtype torch.complex64",
    )
    row(
        name,
        "k_f too short",
        lambda f=f: f(U, None, k_f=KF[:, :8]),
        ValueError,
        r"k_f has FFT size N=8 but must have N >= 15",
    )
    row(name, "k_f H differs", lambda f=f: f(U, None, k_f=KF[:2]), ValueError, r"k_f has H=2 channels")
    row(name, "k_f 1-D", lambda f=f: f(U, None, k_f=KF[0]), ValueError, r"k_f must be 2-D \(H, N\)")
row(
    "butterfly.butterfly_conv",
    "factors wrap around",
    lambda: butterfly.butterfly_conv(U, K, factors=(2, 4)),
    ValueError,
    r"factors must multiply to an FFT size N >= 15 .* got \(2, 4\) with product 8",
)
row(
    "butterfly.butterfly_conv",
    "factors a string",
    lambda: butterfly.butterfly_conv(U, K, factors="44"),
    TypeError,
    r"factors must be a tuple",
)
row(
    "butterfly.butterfly_conv",
    "k_f non-power-of-two, no factors",
    lambda: butterfly.butterfly_conv(U, None, k_f=butterfly.butterfly_kernel_spectrum(K, 8, factors=(3, 6))),
    ValueError,
    r"factors must be given .* size N=18",
)
row(
    "butterfly.three_pass_conv",
    "outer 3",
    lambda: butterfly.three_pass_conv(U, K, outer=3),
    ValueError,
    r"outer must divide the FFT size N = 16, got 3",
)
row(
    "butterfly.three_pass_conv",
    "outer 0",
    lambda: butterfly.three_pass_conv(U, K, outer=0),
    ValueError,
    r"outer must be >= 1",
)
row(
    "butterfly.three_pass_conv",
    "outer float",
    lambda: butterfly.three_pass_conv(U, K, outer=4.0),
    TypeError,
    r"outer must be an int",
)
row(
    "butterfly.radix2_conv",
    "jit=1",
    lambda: butterfly.radix2_conv(U, K, jit=1),
    TypeError,
    r"jit must be True or False",
)
row(
    "butterfly.resolve_factors",
    "factors an int",
    lambda: butterfly.resolve_factors(16, 16, 15, "why"),
    TypeError,
    r"factors must be a tuple",
)
row(
    "butterfly.resolve_factors",
    "too small",
    lambda: butterfly.resolve_factors(16, (2, 2), 15, "because"),
    ValueError,
    r"factors must multiply to an FFT size N >= 15 \(because\)",
)
row(
    "butterfly.resolve_factors",
    "N_from not a power of two",
    lambda: butterfly.resolve_factors(12, None, 11, "x"),
    ValueError,
    r"N must be a power of two",
)

# ----------------------------------------------------------------------------- io_model.py
for name, f in {
    "io_model.unfused_fft_conv": io_model.unfused_fft_conv,
    "io_model.fused_conv": io_model.fused_conv,
    "io_model.three_pass_traffic": io_model.three_pass_traffic,
    "io_model.flashbutterfly_conv": lambda *a, **kw: io_model.flashbutterfly_conv(*a, fast_memory_bytes=2**16, **kw),
}.items():
    row(name, "B = 0", lambda f=f: f(0, 1, 8), ValueError, r"B must be >= 1, got 0")
    row(name, "L float", lambda f=f: f(1, 1, 8.0), TypeError, r"L must be an int, got float")
    row(name, "H a string", lambda f=f: f(1, "2", 8), TypeError, r"H must be an int, got str")
    row(name, "dtype_bytes 0", lambda f=f: f(1, 1, 8, dtype_bytes=0), ValueError, r"dtype_bytes must be >= 1")
    row(name, "fft_size too small", lambda f=f: f(1, 1, 8, fft_size=8), ValueError, r"fft_size must be >= 2L - 1 = 15")
row(
    "io_model.unfused_fft_conv",
    "fft_passes 0",
    lambda: io_model.unfused_fft_conv(1, 1, 8, fft_passes=0),
    ValueError,
    r"fft_passes must be >= 1",
)
row(
    "io_model.fused_conv",
    "factors an int",
    lambda: io_model.fused_conv(1, 1, 8, factors=16),
    TypeError,
    r"factors must be a tuple",
)
row(
    "io_model.fused_conv",
    "real_input 1",
    lambda: io_model.fused_conv(1, 1, 8, real_input=1),
    TypeError,
    r"real_input must be True or False",
)
row(
    "io_model.three_pass_traffic",
    "real_input 'yes'",
    lambda: io_model.three_pass_traffic(1, 1, 8, real_input="yes"),
    TypeError,
    r"real_input must be True or False",
)
row(
    "io_model.three_pass_traffic",
    "outer not dividing N/2 with real_input",
    lambda: io_model.three_pass_traffic(1, 1, 8, outer=16, real_input=True),
    ValueError,
    r"outer must divide N/2 = 8 \(real_input=True\), got 16",
)
row(
    "io_model.three_pass_traffic",
    "outer 3",
    lambda: io_model.three_pass_traffic(1, 1, 8, outer=3),
    ValueError,
    r"outer must be a power of two",
)
row(
    "io_model.flashbutterfly_conv",
    "fast memory 0",
    lambda: io_model.flashbutterfly_conv(1, 1, 8, fast_memory_bytes=0),
    ValueError,
    r"fast_memory_bytes must be >= 1",
)
row("io_model.fft_flops", "N = 0", lambda: io_model.fft_flops(0), ValueError, r"N must be >= 1")
row("io_model.fft_flops", "N float", lambda: io_model.fft_flops(8.0), TypeError, r"N must be an int")
row(
    "io_model.monarch_flops",
    "factors an int",
    lambda: io_model.monarch_flops(16, 16),
    TypeError,
    r"factors must be a tuple of ints such as \(N1, N2\), got 16",
)
row(
    "io_model.monarch_flops",
    "wrong product",
    lambda: io_model.monarch_flops(16, (4, 2)),
    ValueError,
    r"factors must multiply to N = 16, got \(4, 2\) \(product 8\)",
)
row(
    "io_model.monarch_flops",
    "N = 12, no factors",
    lambda: io_model.monarch_flops(12),
    ValueError,
    r"N must be a power of two",
)
row(
    "io_model.roofline_time",
    "not a Traffic",
    lambda: io_model.roofline_time({}, 1e12, 1e12),
    TypeError,
    r"traffic must be a Traffic",
)
row(
    "io_model.roofline_time",
    "bandwidth 0",
    lambda: io_model.roofline_time(io_model.fused_conv(1, 1, 8), 0, 1e12),
    ValueError,
    r"bandwidth must be > 0",
)
row(
    "io_model.roofline_time",
    "peak NaN",
    lambda: io_model.roofline_time(io_model.fused_conv(1, 1, 8), 1e12, math.nan),
    ValueError,
    r"peak_flops must be finite",
)

# ----------------------------------------------------------------------------- regularize.py
KERNEL_FNS = {
    "regularize.squash": lambda k: regularize.squash(k, 0.1),
    "regularize.smooth": lambda k: regularize.smooth(k, 1),
    "regularize.kernel_dropout": lambda k: regularize.kernel_dropout(k, 0.1),
    "regularize.regularize_kernel": regularize.regularize_kernel,
    "regularize.total_variation": regularize.total_variation,
    "regularize.high_freq_fraction": regularize.high_freq_fraction,
    "regularize.spectral_decay": regularize.spectral_decay,
    "regularize.smoothness_metrics": regularize.smoothness_metrics,
}
for name, f in KERNEL_FNS.items():
    row(name, "0-D kernel", lambda f=f: f(torch.tensor(1.0)), ValueError, r"k must have at least 1 dimension")
    row(name, "empty kernel", lambda f=f: f(T(3, 0)), ValueError, r"k must have length Lk >= 1 along its last axis")
    row(name, "int kernel", lambda f=f: f(torch.arange(8)), TypeError, r"k must have dtype .* got torch.int64")
    row(name, "complex kernel", lambda f=f: f(T(8).to(torch.complex64)), TypeError, r"imaginary part")
    row(name, "a list", lambda f=f: f([1.0, 2.0]), TypeError, r"k must be a torch.Tensor, got list")
row("regularize.squash", "lam < 0", lambda: regularize.squash(K, -0.1), ValueError, r"lam must be >= 0.0, got -0.1")
row("regularize.squash", "lam NaN", lambda: regularize.squash(K, math.nan), ValueError, r"lam must be finite, got nan")
row("regularize.squash", "lam a string", lambda: regularize.squash(K, "0.1"), TypeError, r"lam must be a real number")
row("regularize.smooth", "even width", lambda: regularize.smooth(K, 4), ValueError, r"width must be odd, got 4")
row(
    "regularize.smooth",
    "width > Lk",
    lambda: regularize.smooth(K, 9),
    ValueError,
    r"width must be <= the kernel length Lk = 8",
)
row("regularize.smooth", "width 0", lambda: regularize.smooth(K, 0), ValueError, r"width must be >= 1")
row(
    "regularize.kernel_dropout",
    "p = 1",
    lambda: regularize.kernel_dropout(K, 1.0),
    ValueError,
    r"p must be < 1.0, got 1.0",
)
row(
    "regularize.kernel_dropout",
    "training=1",
    lambda: regularize.kernel_dropout(K, 0.1, training=1),
    TypeError,
    r"training must be True or False, got int 1",
)
row(
    "regularize.regularize_kernel",
    "smooth_width even",
    lambda: regularize.regularize_kernel(K, smooth_width=2),
    ValueError,
    r"smooth_width must be odd, got 2",
)
row(
    "regularize.regularize_kernel",
    "kernel_dropout 1.5",
    lambda: regularize.regularize_kernel(K, kernel_dropout=1.5),
    ValueError,
    r"kernel_dropout must be < 1.0, got 1.5",
)
row(
    "regularize.regularize_kernel",
    "kernel_dropout 1",
    lambda: regularize.regularize_kernel(K, kernel_dropout=1.0),
    ValueError,
    r"kernel_dropout must be < 1.0, got 1.0",
)
row(
    "regularize.regularize_kernel",
    "the old name dropout=",
    lambda: regularize.regularize_kernel(K, dropout=0.1),
    TypeError,
    r"unexpected keyword argument 'dropout'",
)
row(
    "regularize.regularize_kernel",
    "typo keyword",
    lambda: regularize.regularize_kernel(K, lamb=0.1),
    TypeError,
    r"unexpected keyword argument 'lamb'",
)
row(
    "regularize.high_freq_fraction",
    "cutoff 0.6",
    lambda: regularize.high_freq_fraction(K, 0.6),
    ValueError,
    r"cutoff must be <= 0.5",
)
row(
    "regularize.spectral_decay",
    "Lk < 8",
    lambda: regularize.spectral_decay(T(7)),
    ValueError,
    r"k must have length Lk >= 8",
)
row(
    "regularize.spectral_decay",
    "nbins 1",
    lambda: regularize.spectral_decay(T(16), nbins=1),
    ValueError,
    r"nbins must be >= 2",
)
row(
    "regularize.spectral_decay",
    "f_min 0",
    lambda: regularize.spectral_decay(T(16), f_min=0),
    ValueError,
    r"f_min must be > 0.0",
)
row(
    "regularize.smoothness_metrics",
    "2-D kernel",
    lambda: regularize.smoothness_metrics(K),
    ValueError,
    r"k must be 1-D \(Lk,\) here, got shape \(3, 8\); index one row",
)
for dt in (torch.int64, torch.bool, torch.float16, torch.complex64, "float32"):
    row(
        "regularize.ssm_kernel",
        f"dtype {dt}",
        lambda dt=dt: regularize.ssm_kernel(2, 8, dtype=dt),
        TypeError,
        r"dtype must be torch.float32 or torch.float64, got ",
    )
    row(
        "regularize.s4d_init",
        f"dtype {dt}",
        lambda dt=dt: regularize.s4d_init(2, dtype=dt),
        TypeError,
        r"dtype must be torch.float32 or torch.float64, got ",
    )
row("regularize.ssm_kernel", "L = 0", lambda: regularize.ssm_kernel(2, 0), ValueError, r"L must be >= 1")
row("regularize.ssm_kernel", "H float", lambda: regularize.ssm_kernel(2.0, 8), TypeError, r"H must be an int")
row("regularize.s4d_init", "odd state_dim", lambda: regularize.s4d_init(2, 7), ValueError, r"state_dim must be even")
row(
    "regularize.s4d_init",
    "dt_max < dt_min",
    lambda: regularize.s4d_init(2, dt_min=0.1, dt_max=0.01),
    ValueError,
    r"dt_max must be >= 0.1",
)
row("regularize.s4d_init", "seed -1", lambda: regularize.s4d_init(2, seed=-1), ValueError, r"seed must be >= 0")
P4 = regularize.s4d_init(2, 8)
row(
    "regularize.s4d_kernel",
    "C 2-D",
    lambda: regularize.s4d_kernel(P4["log_dt"], P4["A_real"], P4["A_imag"], P4["C"][..., 0], 8),
    ValueError,
    r"C must be 3-D \(H, N, 2\)",
)
row(
    "regularize.s4d_kernel",
    "shapes disagree",
    lambda: regularize.s4d_kernel(P4["log_dt"][:1], P4["A_real"], P4["A_imag"], P4["C"], 8),
    ValueError,
    r"s4d parameters disagree in shape",
)
row(
    "regularize.s4d_kernel",
    "L 0",
    lambda: regularize.s4d_kernel(P4["log_dt"], P4["A_real"], P4["A_imag"], P4["C"], 0),
    ValueError,
    r"L must be >= 1",
)
row(
    "regularize.random_init",
    "int dtype",
    lambda: regularize.random_init((2, 8), dtype=torch.int64),
    TypeError,
    r"dtype must be torch.float32",
)
row(
    "regularize.random_init",
    "shape an int",
    lambda: regularize.random_init(8),
    TypeError,
    r"shape must be a tuple of ints",
)
row(
    "regularize.random_init",
    "negative size",
    lambda: regularize.random_init((2, -1)),
    ValueError,
    r"shape\[1\] must be >= 0",
)
row(
    "regularize.random_init",
    "scale -1",
    lambda: regularize.random_init((2, 8), scale=-1),
    ValueError,
    r"scale must be >= 0.0",
)
row(
    "regularize.double_exp_init",
    "channels 0",
    lambda: regularize.double_exp_init(0, 2, 8),
    ValueError,
    r"channels must be >= 1",
)
row(
    "regularize.double_exp_init",
    "complex dtype",
    lambda: regularize.double_exp_init(1, 2, 8, dtype=torch.complex64),
    TypeError,
    r"dtype must be torch.float32 or torch.float64",
)

# ----------------------------------------------------------------------------- params.py, layers.py
row(
    "params.param_groups",
    "not a module",
    lambda: params.param_groups(3, 1e-3, 0.1),
    TypeError,
    r"model must be a torch.nn.Module",
)
row(
    "params.param_groups",
    "lr 0",
    lambda: params.param_groups(torch.nn.Linear(2, 2), 0, 0.1),
    ValueError,
    r"lr must be > 0.0",
)
row(
    "params.param_groups",
    "weight decay < 0",
    lambda: params.param_groups(torch.nn.Linear(2, 2), 1e-3, -1),
    ValueError,
    r"weight_decay must be >= 0.0",
)
row(
    "params.tag_params",
    "lr NaN",
    lambda: params.tag_params(torch.nn.Linear(2, 2), ["bias"], lr=math.nan),
    ValueError,
    r"lr must be finite",
)
row(
    "params.tag_params",
    "not a parameter",
    lambda: params.tag_params(torch.nn.Sequential(torch.nn.ReLU()), ["0"]),
    TypeError,
    r"names must name parameters of module; '0' is ReLU",
)
row(
    "params.tag_params",
    "misspelt name",
    lambda: params.tag_params(torch.nn.Linear(2, 2), ["wieght"]),
    ValueError,
    r"names must name parameters of module; Linear has no attribute 'wieght' \(its own parameters: weight, bias\)",
)
row(
    "params.tag_params",
    "names a bare string",
    lambda: params.tag_params(torch.nn.Linear(2, 2), "weight"),
    TypeError,
    r"names must be a list or tuple of parameter names such as \['raw_kernel'\], got str 'weight'",
)
row(
    "params.tag_params",
    "name not a string",
    lambda: params.tag_params(torch.nn.Linear(2, 2), [0]),
    TypeError,
    r"names must hold strings, got int 0",
)
row(
    "params.tag_params",
    "module not a module",
    lambda: params.tag_params("layer", ["weight"]),
    TypeError,
    r"module must be a torch.nn.Module, got str",
)
row("layers.LongConv", "d_model 0", lambda: layers.LongConv(0, 8), ValueError, r"d_model must be >= 1, got 0")
row("layers.LongConv", "l_max float", lambda: layers.LongConv(4, 8.0), TypeError, r"l_max must be an int")
row(
    "layers.LongConv",
    "bidirectional 1",
    lambda: layers.LongConv(4, 8, bidirectional=1),
    TypeError,
    r"bidirectional must be True or False, got int 1",
)
row(
    "layers.LongConv",
    "unknown backend",
    lambda: layers.LongConv(4, 8, backend="fftt"),
    ValueError,
    r"backend must be one of",
)
row(
    "layers.LongConv",
    "forward on 2-D u",
    lambda: layers.LongConv(3, 8)(T(3, 8)),
    ValueError,
    r"u must be 3-D \(B, H, L\)",
)
row("layers.SSMKernel", "n 0", lambda: layers.SSMKernel(0), ValueError, r"H must be >= 1, got 0")
row(
    "layers.SSMKernel", "odd state_dim", lambda: layers.SSMKernel(2, state_dim=3), ValueError, r"state_dim must be even"
)

# ----------------------------------------------------------------------------- learned.py
row(
    "learned.learned_butterfly_conv",
    "blocks wrap around",
    lambda: learned.learned_butterfly_conv(U, K, [C64[0][:2, :2], C64[1]]),
    ValueError,
    r"blocks have sizes \(2, 4\), an FFT size N = 8; .* N >= L \+ Lk - 1 = 15",
)
row(
    "learned.learned_butterfly_conv",
    "complex128 blocks",
    lambda: learned.learned_butterfly_conv(U, K, [b.to(torch.complex128) for b in C64]),
    TypeError,
    r"blocks\[0\] must have dtype torch.complex64, got torch.complex128 \(convert with .to\(torch.complex64\)\)",
)
row(
    "learned.learned_butterfly_conv",
    "inverse_blocks alone",
    lambda: learned.learned_butterfly_conv(U, K, inverse_blocks=C64),
    ValueError,
    r"inverse_blocks needs blocks too",
)
row(
    "learned.learned_butterfly_conv",
    "factors disagree",
    lambda: learned.learned_butterfly_conv(U, K, C64, factors=(2, 8)),
    ValueError,
    r"factors \(2, 8\) disagree with the block sizes \(4, 4\)",
)
row(
    "learned.LearnedButterflyConv",
    "d_model 0",
    lambda: learned.LearnedButterflyConv(0, 8),
    ValueError,
    r"d_model must be >= 1",
)
row(
    "learned.LearnedButterflyConv",
    "inverse_mode typo",
    lambda: learned.LearnedButterflyConv(2, 8, inverse_mode="tide"),
    ValueError,
    r"inverse_mode must be one of 'tied', 'learned'; got 'tide'",
)
row(
    "learned.LearnedButterflyConv",
    "inverse=True (a bool)",
    lambda: learned.LearnedButterflyConv(2, 8, inverse=True),
    TypeError,
    r"inverse_mode must be 'tied' or 'learned', got inverse=True",
)
row(
    "learned.LearnedButterflyConv",
    "dtype float16",
    lambda: learned.LearnedButterflyConv(2, 8, dtype=torch.float16),
    TypeError,
    r"dtype must be torch.float32 or torch.float64, got torch.float16",
)
row(
    "learned.LearnedButterflyConv",
    "init_noise < 0",
    lambda: learned.LearnedButterflyConv(2, 8, init_noise=-1),
    ValueError,
    r"init_noise must be >= 0.0",
)
row(
    "learned.LearnedButterflyConv",
    "block_lr 0",
    lambda: learned.LearnedButterflyConv(2, 8, block_lr=0),
    ValueError,
    r"block_lr must be > 0.0",
)
row(
    "learned.LearnedButterflyConv",
    "factors too small",
    lambda: learned.LearnedButterflyConv(2, 8, factors=(2, 4)),
    ValueError,
    r"factors must multiply to an FFT size N >= 15",
)
row(
    "learned.LearnedButterflyConv",
    "forward L > l_max",
    lambda: learned.LearnedButterflyConv(3, 4)(U, K),
    ValueError,
    r"u has length L = 8 but this LearnedButterflyConv was built for l_max = 4",
)
row(
    "learned.LearnedButterflyConv",
    "forward float64 on float32 blocks",
    lambda: learned.LearnedButterflyConv(3, 8)(U64, K64),
    TypeError,
    r"u has dtype torch.float64 but the blocks are torch.complex64",
)
row(
    "learned.LearnedButterflyConv",
    "which typo",
    lambda: learned.LearnedButterflyConv(3, 8).blocks("fwd"),
    ValueError,
    r"which must be one of 'forward', 'inverse'",
)
row(
    "learned.dft_blocks",
    "factors an int",
    lambda: learned.dft_blocks(16),
    TypeError,
    r"factors must be a tuple of ints",
)
row(
    "learned.dft_blocks",
    "complex dtype",
    lambda: learned.dft_blocks((4, 4), dtype=torch.complex64),
    TypeError,
    r"dtype must be torch.float32 or torch.float64, got torch.complex64",
)
row("learned.dft_blocks", "H 0", lambda: learned.dft_blocks((4, 4), 0), ValueError, r"H must be >= 1")
row(
    "learned.block_drift",
    "a NumPy block",
    lambda: learned.block_drift([np.eye(2)]),
    TypeError,
    r"blocks\[0\] must be a torch.Tensor, got ndarray",
)
row(
    "learned.block_drift",
    "a real block",
    lambda: learned.block_drift([torch.eye(2)]),
    TypeError,
    r"blocks\[0\] must have dtype torch.complex64 or torch.complex128, got torch.float32",
)
row(
    "learned.block_drift",
    "non-square",
    lambda: learned.block_drift([C64[0][:2]]),
    ValueError,
    r"blocks\[0\] must be square",
)
row(
    "learned.block_drift",
    "a tensor, not a list",
    lambda: learned.block_drift(C64[0]),
    TypeError,
    r"blocks must be a list",
)
row(
    "learned.learned_long_conv",
    "channels 0",
    lambda: learned.learned_long_conv(2, 8, channels=0),
    ValueError,
    r"channels must be >= 1",
)
row(
    "learned.learned_long_conv",
    "inverse_mode typo",
    lambda: learned.learned_long_conv(2, 8, inverse_mode="x"),
    ValueError,
    r"inverse_mode must be one of 'tied', 'learned'; got 'x'",
)

# ----------------------------------------------------------------------------- dispatch.py, timing.py
row(
    "dispatch.get_backend",
    "typo",
    lambda: get_backend("fftt"),
    ValueError,
    r"backend must be one of 'direct', .*; got 'fftt'",
)
row("dispatch.get_backend", "None", lambda: get_backend(None), ValueError, r"backend must be one of .*; got None")
row("dispatch.resolve_backend", "typo", lambda: dispatch.resolve_backend("fftt"), ValueError,
    r"backend must be one of 'direct', .*; got 'fftt'")
row("dispatch.resolve_backend", "u not a tensor", lambda: dispatch.resolve_backend("auto", [1.0]), TypeError,
    r"u must be a torch.Tensor or None, got list")
row(
    "dispatch.long_conv",
    "unknown backend",
    lambda: dispatch.long_conv(U, K, backend="x"),
    ValueError,
    r"backend must be one of",
)
row("dispatch.backends", "an argument", lambda: dispatch.backends("fft"), TypeError, r"takes 0 positional arguments")
row("timing.time_call", "not callable", lambda: timing.time_call(3), TypeError, r"fn must be callable, got int")
row("timing.time_call", "repeats 0", lambda: timing.time_call(print, repeats=0), ValueError, r"repeats must be >= 1")
row(
    "timing.time_call",
    "stat typo",
    lambda: timing.time_call(print, stat="mean"),
    ValueError,
    r"stat must be one of 'median', 'min'",
)
row(
    "timing.time_call",
    "clock typo",
    lambda: timing.time_call(print, clock="cpu_time"),
    ValueError,
    r"clock must be one of 'wall', 'cpu'",
)
row(
    "timing.sweep",
    "length 0",
    lambda: timing.sweep({}, [0], lambda L: ()),
    ValueError,
    r"lengths\[i\] must be >= 1, got 0",
)
row(
    "timing.sweep",
    "stat typo",
    lambda: timing.sweep({}, [8], lambda L: (), stat="avg"),
    ValueError,
    r"stat must be one of",
)
row(
    "timing.loglog_slope",
    "one point",
    lambda: timing.loglog_slope([8], [1.0]),
    ValueError,
    r"lengths must hold at least 2 points",
)
row("timing.crossover", "lists", lambda: timing.crossover([1], [1]), TypeError, r"slow and fast must be dicts")
row(
    "timing.crossover",
    "one common length",
    lambda: timing.crossover({8: 1.0}, {8: 2.0}),
    ValueError,
    r"slow and fast must share at least 2 lengths, got 1 in common",
)


# found by a second probe: these used to give a silently wrong answer or an unclear error
row("timing.loglog_slope", "length 0 (LAPACK's 'SVD did not converge')",
    lambda: timing.loglog_slope([0, 8], [1.0, 2.0]), ValueError,
    r"lengths must all be positive and finite \(their logarithms are taken\), got \[0.0\]")
row("timing.loglog_slope", "negative seconds (was a silent nan)", lambda: timing.loglog_slope([8, 16], [-1.0, 2.0]),
    ValueError, r"seconds must all be positive and finite .*got \[-1.0\]")
row("timing.loglog_slope", "lengths and seconds differ in size", lambda: timing.loglog_slope([8, 16, 32], [1.0, 2.0]),
    ValueError, r"lengths and seconds must have the same number of points, got 3 and 2")
row("timing.loglog_slope", "one length twice", lambda: timing.loglog_slope([8, 8], [1.0, 2.0]),
    ValueError, r"lengths must hold at least 2 different lengths")
row("timing.crossover", "negative seconds (was a silent None)",
    lambda: timing.crossover({8: -1.0, 16: 1.0}, {8: 1.0, 16: 0.5}), ValueError,
    r"the seconds of slow must all be positive and finite .*got \[-1.0\]")
row("timing.crossover", "NaN seconds (was a silent None)",
    lambda: timing.crossover({8: 1.0, 16: 1.0}, {8: math.nan, 16: 0.5}), ValueError,
    r"the seconds of fast must all be positive and finite .*got \[nan\]")
row("timing.crossover", "length 0", lambda: timing.crossover({0: 1.0, 16: 1.0}, {0: 2.0, 16: 0.5}), ValueError,
    r"the lengths of slow and fast must all be positive")
row("conv.fft_conv", "fft_size 2^40 (was the allocator's 'can't allocate 52776558133248 bytes')",
    lambda: conv.fft_conv(U, K, fft_size=2**40), ValueError,
    r"fft_conv with B=2, H=3, fft_size=1099511627776 would need ~\d+ TiB of memory .*refused before allocating")
row("fft.dft_matrix", "n 2^20 (was NumPy's MemoryError)", lambda: fft.dft_matrix(2**20), ValueError,
    r"dft_matrix\(1048576\) would need ~48 TiB of memory .*refused before allocating; keep n small")
row("fft.twiddle_grid", "2^20 x 2^20 (was NumPy's MemoryError)", lambda: fft.twiddle_grid(2**20, 2**20), ValueError,
    r"twiddle_grid\(1048576, 1048576\) would need ~48 TiB of memory")
row("fft.butterfly_factors", "n 2^20 (was the allocator's error)", lambda: fft.butterfly_factors(2**20), ValueError,
    r"butterfly_factors\(1048576\) would need ~.* of memory .*one per stage")
_GRAD = r"requires grad, but {} is compiled by Numba and runs outside autograd: its result would carry no gradient"
row("conv.direct_conv", "jit=True, u requires grad (the gradient was silently cut)",
    lambda: conv.direct_conv(U.clone().requires_grad_(True), K, jit=True), ValueError,
    "u " + _GRAD.format(r"direct_conv\(jit=True\)") + r" to u\. Use jit=False")
row("conv.direct_conv", "jit=True, k requires grad",
    lambda: conv.direct_conv(U, K.clone().requires_grad_(True), jit=True), ValueError,
    "k " + _GRAD.format(r"direct_conv\(jit=True\)"))
row("fft.fft_iterative", "jit=True, x requires grad (the gradient was silently cut)",
    lambda: fft.fft_iterative(T(8).requires_grad_(True), jit=True), ValueError,
    "x " + _GRAD.format(r"fft_iterative\(jit=True\)"))
row("butterfly.radix2_conv", "jit=True, u requires grad (the gradient was silently cut)",
    lambda: butterfly.radix2_conv(U.clone().requires_grad_(True), K, jit=True), ValueError,
    "u " + _GRAD.format(r"radix2_conv\(jit=True\)"))


# ----------------------------------------------------------------------------- kernels/cpu.py
def _cpu():
    from longconv_edu.kernels import cpu
    return cpu


row("kernels.cpu.cpu_rfft", "n not a power of two", lambda: _cpu().cpu_rfft(T(3), 12), ValueError,
    r"n must be a power of two, got 12")
row("kernels.cpu.cpu_rfft", "n below 8", lambda: _cpu().cpu_rfft(T(3), 4), ValueError, r"n must be >= 8, got 4")
row("kernels.cpu.cpu_rfft", "rows longer than n/2", lambda: _cpu().cpu_rfft(T(2, 5), 8), ValueError,
    r"x must have 1 <= x.shape\[-1\] <= n/2 = 4 .*got shape \(2, 5\)")
row("kernels.cpu.cpu_rfft", "0-D", lambda: _cpu().cpu_rfft(torch.tensor(1.0), 8), ValueError,
    r"x must have 1 <= x.shape\[-1\] <= n/2 = 4 .*got shape \(\)")
row("kernels.cpu.cpu_rfft", "int64", lambda: _cpu().cpu_rfft(torch.arange(3), 8), TypeError,
    r"x must have dtype torch.float32 or torch.float64, got torch.int64")
row("kernels.cpu.cpu_rfft", "on meta", lambda: _cpu().cpu_rfft(T(3).to("meta"), 8), ValueError, r"x .*meta")
row("kernels.cpu.kernel_spectrum", "L 0", lambda: _cpu().kernel_spectrum(K, 0), ValueError, r"L must be >= 1, got 0")
row("kernels.cpu.kernel_spectrum", "Lk > L", lambda: _cpu().kernel_spectrum(K, 4), ValueError,
    r"k must have length 1 <= Lk <= L = 4, got Lk=8")
row("kernels.cpu.kernel_spectrum", "k 1-D", lambda: _cpu().kernel_spectrum(T(8), 8), ValueError,
    r"k must be 2-D \(H, Lk\)")
row("kernels.cpu.kernel_spectrum", "k int", lambda: _cpu().kernel_spectrum(K.long(), 8), TypeError,
    r"k must have dtype torch.float32 or torch.float64, got torch.int64")
row("kernels.cpu.stage_plan", "L 0", lambda: _cpu().stage_plan(0), ValueError, r"L must be >= 1, got 0")
row("kernels.cpu.stage_plan", "L True", lambda: _cpu().stage_plan(True), TypeError, r"L must be an int, got bool True")
row("kernels.cpu.profile_row", "L 0", lambda: _cpu().profile_row(0), ValueError, r"L must be >= 1, got 0")
row("kernels.cpu.profile_row", "repeats 0", lambda: _cpu().profile_row(64, repeats=0), ValueError,
    r"repeats must be >= 1, got 0")
row("kernels.cpu.profile_row", "dtype junk (was a bare NumPy TypeError)", lambda: _cpu().profile_row(64, dtype="junk"),
    ValueError, r"dtype must be 'float32' or 'float64', got 'junk'")


# ----------------------------------------------------------------------------- kernels/trace.py
def _trace_rows():
    from longconv_edu.kernels import trace as tr
    x = np.zeros(4)

    def body(a):
        a[0] = 1.0

    u64, k64 = U64[:1, :1, :4], K64[:1, :2]
    row("kernels.trace.trace_conv", "kernel typo", lambda: tr.trace_conv(u64, k64, kernel="fast"),
        ValueError, r"kernel must be one of 'radix2', 'monarch'")
    row("kernels.trace.trace_conv", "scheme typo", lambda: tr.trace_conv(u64, k64, scheme="fast"),
        ValueError, r"scheme must be one of")
    row("kernels.trace.trace_conv", "record 1", lambda: tr.trace_conv(u64, k64, record=1),
        TypeError, r"record must be True or False, got int")
    row("kernels.trace.trace_conv", "drop_barriers 'all'",
        lambda: tr.trace_conv(u64, k64, drop_barriers="all"), TypeError,
        r"drop_barriers must be None, 'forward' or a tuple")
    row("kernels.trace.trace_conv", "drop_barriers negative",
        lambda: tr.trace_conv(u64, k64, drop_barriers=(-1,)), ValueError,
        r"drop_barriers\[i\] must be >= 0, got -1")
    row("kernels.trace.trace_conv", "block 3", lambda: tr.trace_conv(u64, k64, kernel="monarch", block=3),
        ValueError, r"block must be a power of two, got 3")
    row("kernels.trace.trace_conv", "cluster 3", lambda: tr.trace_conv(u64, k64, kernel="monarch", cluster=3),
        ValueError, r"cluster must be a power of two, got 3")
    row("kernels.trace.trace_conv", "cluster 16", lambda: tr.trace_conv(u64, k64, kernel="monarch", cluster=16),
        ValueError, r"cluster must be <= 8, got 16")
    row("kernels.trace.trace_conv", "monarch too little fast memory for any plan",
        lambda: tr.trace_conv(u64, k64, kernel="monarch", smem_bytes=64), ValueError,
        r"u has length L=4: FFT size 8 does not fit the Monarch kernel's fast memory .* "
        r"smem_bytes=64 \(float64\); with this budget it supports L <= 2;")
    row("kernels.trace.trace_conv", "monarch naive",
        lambda: tr.trace_conv(u64, k64, kernel="monarch", scheme="naive"), ValueError,
        r"scheme 'naive' is a radix-2 schedule")
    row("kernels.trace.trace_conv", "threads 3", lambda: tr.trace_conv(u64, k64, threads=3),
        ValueError, r"threads must be a power of two, got 3")
    row("kernels.trace.trace_conv", "u 2-D", lambda: tr.trace_conv(U64[0], k64), ValueError,
        r"u must be 3-D \(B, H, L\)")
    row("kernels.trace.trace_kernel", "not a function", lambda: tr.trace_kernel("body", 1, 1, x),
        TypeError, r"kernel must be a Python function .*, got str")
    row("kernels.trace.trace_kernel", "grid list", lambda: tr.trace_kernel(body, [1], 1, x),
        TypeError, r"grid must be an int or a tuple of 1 or 2 ints, got \[1\]")
    row("kernels.trace.trace_kernel", "grid 0", lambda: tr.trace_kernel(body, 0, 1, x),
        ValueError, r"grid\[i\] must be >= 1, got 0")
    row("kernels.trace.trace_kernel", "threads 0", lambda: tr.trace_kernel(body, 1, 0, x),
        ValueError, r"threads must be >= 1, got 0")
    row("kernels.trace.trace_kernel", "smem negative", lambda: tr.trace_kernel(body, 1, 1, x, smem_bytes=-1),
        ValueError, r"smem_bytes must be >= 0, got -1")
    row("kernels.trace.trace_kernel", "names too many",
        lambda: tr.trace_kernel(body, 1, 1, x, names=("a", "b")), TypeError,
        r"names must be a tuple of 1 strings")
    row("kernels.trace.trace_kernel", "drop 'forward'",
        lambda: tr.trace_kernel(body, 1, 1, x, drop_barriers="forward"), ValueError,
        r"drop_barriers='forward' names the forward stages")
    row("kernels.trace.trace_kernel", "record None", lambda: tr.trace_kernel(body, 1, 1, x, record=None),
        TypeError, r"record must be True or False, got None")
    row("kernels.trace.traffic_rows", "not a Trace", lambda: tr.traffic_rows({}), TypeError,
        r"trace must be a Trace \(from trace_conv\), got dict")
    row("kernels.trace.traffic_rows", "spectrum 1",
        lambda: tr.traffic_rows(tr.trace_conv(u64, k64), spectrum=1), TypeError,
        r"spectrum must be True or False, got int")
    row("kernels.trace.butterfly_schedule", "not a Trace", lambda: tr.butterfly_schedule(None),
        TypeError, r"trace must be a Trace \(from trace_conv\), got NoneType")
    row("kernels.trace.butterfly_schedule", "no events",
        lambda: tr.butterfly_schedule(tr.trace_conv(u64, k64)), ValueError,
        r"trace has no recorded accesses: run trace_conv\(\.\.\., record=True\)")
    row("kernels.trace.butterfly_schedule", "launch out of range",
        lambda: tr.butterfly_schedule(tr.trace_conv(u64, k64, record=True), launch=1), ValueError,
        r"launch must be <= 0, got 1")
    row("kernels.trace.butterfly_schedule", "a Monarch trace",
        lambda: tr.butterfly_schedule(tr.trace_conv(u64, k64, kernel="monarch", record=True)),
        ValueError, r"butterfly_schedule reads radix-2 butterflies; trace.kernel is 'monarch'")


_trace_rows()


# ----------------------------------------------------------------------------- tensorcore.py
def _tensorcore_rows():
    from longconv_edu import tensorcore as tc

    x16 = T(16)
    row("tensorcore.round_to_format", "float64 x", lambda: tc.round_to_format(T(4, dtype=torch.float64), "fp16"),
        TypeError, r"x must have dtype torch.float32, got torch.float64")
    row("tensorcore.round_to_format", "a NumPy array", lambda: tc.round_to_format(np.ones(4, np.float32), "fp16"),
        TypeError, r"x must be a torch.Tensor, got ndarray .*torch.from_numpy")
    row("tensorcore.round_to_format", "fmt 'fp8'", lambda: tc.round_to_format(x16, "fp8"), ValueError,
        r"fmt must be one of 'fp16', 'bf16', 'tf32', 'tf32-trunc', 'fp32'; got 'fp8'")
    row("tensorcore.round_to_format", "fmt a dtype", lambda: tc.round_to_format(x16, torch.float16), TypeError,
        r"fmt must be a string, one of 'fp16'")
    row("tensorcore.emulated_dft", "N = 12", lambda: tc.emulated_dft(T(12)), ValueError,
        r"x must have a power-of-two length along its last axis, got N=12 .*zero-pad it to 16")
    row("tensorcore.emulated_dft", "0-D x", lambda: tc.emulated_dft(torch.tensor(1.0)), ValueError,
        r"x must have at least 1 dimension")
    row("tensorcore.emulated_dft", "int x", lambda: tc.emulated_dft(torch.arange(16)), TypeError,
        r"x must have dtype")
    row("tensorcore.emulated_dft", "block 12", lambda: tc.emulated_dft(x16, block=12), ValueError,
        r"block must be a power of two, got 12")
    row("tensorcore.emulated_dft", "block 128", lambda: tc.emulated_dft(x16, block=128), ValueError,
        r"block must be <= 64, got 128")
    row("tensorcore.emulated_dft", "block 1", lambda: tc.emulated_dft(x16, block=1), ValueError,
        r"block must be >= 2, got 1")
    row("tensorcore.emulated_dft", "inverse 1", lambda: tc.emulated_dft(x16, inverse=1), TypeError,
        r"inverse must be True or False, got int 1")
    row("tensorcore.emulated_dft", "fmt 'half'", lambda: tc.emulated_dft(x16, fmt="half"), ValueError,
        r"fmt must be one of .*got 'half'")
    row("tensorcore.emulated_fft_conv", "k on meta", lambda: tc.emulated_fft_conv(U, K.to("meta")), ValueError,
        r"k is on device meta but u is on device cpu")
    row("tensorcore.emulated_fft_conv", "mixed dtypes", lambda: tc.emulated_fft_conv(U, K64), TypeError,
        r"k has dtype torch.float64 but u has dtype torch.float32")
    row("tensorcore.emulated_fft_conv", "Lk > L", lambda: tc.emulated_fft_conv(U, T(3, 9)), ValueError,
        r"k must have length 1 <= Lk <= L = 8, got Lk=9")
    row("tensorcore.emulated_fft_conv", "u 2-D", lambda: tc.emulated_fft_conv(U[0], K), ValueError,
        r"u must be 3-D \(B, H, L\)")
    row("tensorcore.emulated_fft_conv", "fmt 'bfloat16'", lambda: tc.emulated_fft_conv(U, K, fmt="bfloat16"),
        ValueError, r"fmt must be one of .*got 'bfloat16'")
    row("tensorcore.emulated_fft_conv", "block 16.0", lambda: tc.emulated_fft_conv(U, K, block=16.0), TypeError,
        r"block must be an int, got float")
    row("tensorcore.emulated_fft_conv", "H = 1024, L = 2^20 (stride-0 input)",
        lambda: tc.emulated_fft_conv(torch.zeros(1, 1, 1).expand(1, 1024, 2**20), torch.zeros(1, 1).expand(1024, 2**20)),
        ValueError, r"emulated_fft_conv would need ~.* of memory")
    row("tensorcore.accuracy_table", "Ls an int", lambda: tc.accuracy_table(1024), TypeError,
        r"Ls must be a non-empty list or tuple of sequence lengths, got 1024")
    row("tensorcore.accuracy_table", "Ls empty", lambda: tc.accuracy_table(()), TypeError,
        r"Ls must be a non-empty list")
    row("tensorcore.accuracy_table", "L = 0", lambda: tc.accuracy_table((0,)), ValueError,
        r"Ls\[0\] must be >= 1, got 0")
    row("tensorcore.accuracy_table", "fmts a string", lambda: tc.accuracy_table((8,), fmts="fp16"), TypeError,
        r"fmts must be a non-empty list or tuple of formats")
    row("tensorcore.accuracy_table", "scale 0", lambda: tc.accuracy_table((8,), scale=0), ValueError,
        r"scale must be > 0.0, got 0.0")
    row("tensorcore.accuracy_table", "scale nan", lambda: tc.accuracy_table((8,), scale=float("nan")), ValueError,
        r"scale must be finite, got nan")
    row("tensorcore.accuracy_table", "B 0", lambda: tc.accuracy_table((8,), B=0), ValueError,
        r"B must be >= 1, got 0")
    row("tensorcore.block_step_errors", "block 3", lambda: tc.block_step_errors(block=3), ValueError,
        r"block must be a power of two, got 3")
    row("tensorcore.block_step_errors", "rows 0", lambda: tc.block_step_errors(rows=0), ValueError,
        r"rows must be >= 1, got 0")
    row("tensorcore.block_step_errors", "fmts with a typo", lambda: tc.block_step_errors(fmts=("fp16", "tf23")),
        ValueError, r"fmt must be one of .*got 'tf23'")
    row("tensorcore.block_step_errors", "seed -1", lambda: tc.block_step_errors(seed=-1), ValueError,
        r"seed must be >= 0, got -1")


_tensorcore_rows()


# ----------------------------------------------------------------------------- the CUDA kernel's own limits
# (checked before the device: these rows hold on a machine without a GPU or simulator)
def _kc():
    from longconv_edu.kernels import cuda as kc
    return kc


row("kernels.cuda.cuda_conv", "smem_bytes above the device's opt-in maximum",
    lambda: _kc().cuda_conv(U, K, smem_bytes=10**9), ValueError,
    r"smem_bytes=1000000000 cannot be granted: on this device one block may use 16 to \d+ bytes")
row("kernels.cuda.cuda_conv", "smem_bytes below the smallest Monarch block",
    lambda: _kc().cuda_conv(U64, K64, smem_bytes=8), ValueError,
    r"smem_bytes=8 cannot be granted: on this device one block may use 32 to \d+ bytes")
row("kernels.cuda.cuda_conv", "L beyond the longest row (fused or three passes)",
    lambda: _kc().cuda_conv(torch.empty(1, 1, 2**22 + 1, device="meta"), torch.empty(1, 1, device="meta")),
    ValueError, r"u has length L=4194305: .* smem_bytes=232448 \(float32\); with this budget it "
                r"supports L <= 4194304; use backend='fft'")
row("kernels.cuda.cuda_conv", "smem_bytes fits the forward but not the backward",
    lambda: _kc().cuda_conv(U64[:1, :1, :2].clone().requires_grad_(True), K64[:1, :2], smem_bytes=100),
    ValueError, r"smem_bytes=100 fits the forward of L=2 but not its backward: the fused backward "
                r"needs at least 160 bytes")
row("kernels.cuda.cuda_conv", "smem_bytes too small for this L even in three passes",
    lambda: _kc().cuda_conv(U64, K64, smem_bytes=160), ValueError,
    r"u has length L=8: FFT size 16 does not fit .* smem_bytes=160 \(float64\); with this budget "
    r"it supports L <= 4;")
row("kernels.cuda.cuda_conv", "block not a power of two",
    lambda: _kc().cuda_conv(U, K, block=3), ValueError, r"block must be a power of two")
row("kernels.cuda.cuda_conv", "block above 64", lambda: _kc().cuda_conv(U, K, block=128), ValueError,
    r"block must be <= 64")
row("kernels.cuda.cuda_conv", "threads above 1024", lambda: _kc().cuda_conv(U, K, threads=2048),
    ValueError, r"threads must be <= 1024")
row("kernels.cuda.cuda_conv", "float16", lambda: _kc().cuda_conv(U.half(), K.half()), TypeError,
    r"u must have dtype torch.float32 or torch.float64, got torch.float16")
row("kernels.cuda.cuda_conv", "k on another device", lambda: _kc().cuda_conv(U, K.to("meta")),
    ValueError, r"k is on device meta but u is on device cpu")


# ============================================================================ floors 2 and 3
# The lab's and the course's public functions that take input from a user or a notebook.
def _lab():
    import matplotlib

    matplotlib.use("Agg")
    from longconv_edu.course import animations
    from longconv_edu.lab import checkpoints, models, train, viz
    return models, checkpoints, train, viz, animations


_models, _ckpt, _train, _viz, _anim = _lab()
_NET = _models.build_model(l_max=8, d_model=4, n_layers=1)

# ----------------------------------------------------------------------------- lab/models.py
row("lab.models.ModelConfig", "d_model 0", lambda: _models.ModelConfig(d_model=0), ValueError, r"d_model must be >= 1, got 0")
row("lab.models.ModelConfig", "model 'rnn'", lambda: _models.ModelConfig(model="rnn"), ValueError,
    r"model must be one of 'longconv', 'ssm', 'transformer'; got 'rnn'")
row("lab.models.SequenceClassifier", "cfg a dict (was AttributeError 'seed')",
    lambda: _models.SequenceClassifier({"d_model": 4}), TypeError, r"cfg must be a ModelConfig, got dict")
row("lab.models.SequenceClassifier", "integer input", lambda: _NET(torch.ones(2, 8, 1, dtype=torch.long)), TypeError,
    r"x must hold floats \(the model's own dtype is torch.float32\), got torch.int64")
row("lab.models.SequenceClassifier", "longer than l_max", lambda: _NET(T(2, 9, 1)), ValueError,
    r"x has length L=9 but the model was built for l_max=8")
row("lab.models.SequenceClassifier", "2-D input", lambda: _NET(T(2, 8)), ValueError, r"x must be \(B, L, C=1\), got \(2, 8\)")
row("lab.models.build_model", "cfg a dict (was AttributeError 'seed')", lambda: _models.build_model({"d_model": 4}),
    TypeError, r"cfg must be a ModelConfig or None \(settings go in as keywords")
row("lab.models.build_model", "cfg and keywords", lambda: _models.build_model(_models.ModelConfig(), d_model=8),
    TypeError, r"build_model takes a ModelConfig or keyword settings, not both; got cfg and \['d_model'\]")
row("lab.models.build_model", "n_classes 1", lambda: _models.build_model(n_classes=1), ValueError, r"n_classes must be >= 2, got 1")
row("lab.models.count_parameters", "an int (was AttributeError)", lambda: _models.count_parameters(3), TypeError,
    r"model must be a torch.nn.Module, got int")
row("lab.models.long_conv_layers", "an int (was AttributeError)", lambda: _models.long_conv_layers(3), TypeError,
    r"model must be a torch.nn.Module, got int")

# ----------------------------------------------------------------------------- lab/checkpoints.py
row("lab.checkpoints.save_checkpoint", "state a list (was 'not a mapping')",
    lambda: _ckpt.save_checkpoint("never-written.pt", [1]), TypeError, r"state must be a dict \(a checkpoint's content\), got list")
row("lab.checkpoints.load_checkpoint", "config not a dict", lambda: _ckpt.load_checkpoint("missing.pt", config=3),
    TypeError, r"config must be a dict \(RunConfig.as_dict\(\)\) or None, got int")
row("lab.checkpoints.load_checkpoint", "world_size 0", lambda: _ckpt.load_checkpoint("missing.pt", world_size=0),
    ValueError, r"world_size must be an int >= 1 or None, got 0")
row("lab.checkpoints.load_checkpoint", "not a file", lambda: _ckpt.load_checkpoint(__file__), _ckpt.CheckpointError,
    r"checkpoint .*test_bad_inputs.py could not be read .*it may be truncated or corrupted")
row("lab.checkpoints.state_digest", "an int (was AttributeError)", lambda: _ckpt.state_digest(3), TypeError,
    r"state must be a dict \(a checkpoint's content\), got int")
row("lab.checkpoints.param_digest", "an int (was AttributeError)", lambda: _ckpt.param_digest(3), TypeError,
    r"model must be a torch.nn.Module, got int")

# ----------------------------------------------------------------------------- lab/train.py
row("lab.train.RunConfig", "lr -1", lambda: _train.RunConfig(lr=-1), ValueError, r"lr must be > 0.0, got -1.0")
row("lab.train.RunConfig", "net a dict", lambda: _train.RunConfig(net={"d_model": 4}), TypeError,
    r"net must be a models.ModelConfig, got dict")
row("lab.train.fit", "cfg a dict", lambda: _train.fit({}, "never-made"), TypeError, r"cfg must be a RunConfig, got dict")
row("lab.train.fit", "out_dir under a file (checked before any work)",
    lambda: _train.fit(_train.RunConfig(), Path(__file__) / "run", progress=False), ValueError,
    r"out_dir '.*test_bad_inputs.py/run' is not a writable folder")
row("lab.train.restore_model", "a folder with no checkpoint", lambda: _train.restore_model("no-such-run"), ValueError,
    r"run_dir must be a run folder holding checkpoint.pt, got 'no-such-run' \(no no-such-run/checkpoint.pt\)")
row("lab.train.evaluate", "batch_size 0 (was 'range() arg 3')", lambda: _train.evaluate(_NET, [], batch_size=0),
    ValueError, r"batch_size must be >= 1, got 0")
row("lab.train.evaluate", "empty dataset (was ZeroDivisionError)", lambda: _train.evaluate(_NET, []), ValueError,
    r"ds must hold at least one example to evaluate on, got an empty dataset")
row("lab.train.cosine_with_warmup", "total_steps 0",
    lambda: _train.cosine_with_warmup(torch.optim.SGD([torch.nn.Parameter(T(1))], lr=1.0), 0, 0), ValueError,
    r"total_steps must be >= 1, got 0")
row("lab.train.lr_factor", "step -1 (was a silent 0.0)", lambda: _train.lr_factor(-1, 2, 10), ValueError,
    r"step must be >= 0, got -1")
row("lab.train.lr_factor", "total_steps 0", lambda: _train.lr_factor(0, 0, 0), ValueError, r"total_steps must be >= 1, got 0")
row("lab.train.make_optimizer", "cfg a dict (was AttributeError 'lr')", lambda: _train.make_optimizer(_NET, {}),
    TypeError, r"cfg must be a RunConfig, got dict")
row("lab.train.load_data", "cfg a dict (was AttributeError 'task')", lambda: _train.load_data({}), TypeError,
    r"cfg must be a RunConfig, got dict")
row("lab.train.kernel_report", "an int (was AttributeError)", lambda: _train.kernel_report(3), TypeError,
    r"model must be a torch.nn.Module, got int")

# ----------------------------------------------------------------------------- lab/viz.py
_PNG_TEXT = Path(__file__)                       # a file that is not an image
row("lab.viz.compact_png", "an int", lambda: _viz.compact_png(123), TypeError,
    r"fig must be a matplotlib Figure or the path of a PNG file, got int")
row("lab.viz.compact_png", "a missing file", lambda: _viz.compact_png("missing.png"), ValueError, r"'missing.png' is not a file")
row("lab.viz.compact_png", "a file that is no image (was PIL's UnidentifiedImageError)",
    lambda: _viz.compact_png(_PNG_TEXT), ValueError, r"test_bad_inputs.py' is not an image")
row("lab.viz.new_figure", "no columns", lambda: _viz.new_figure(0), ValueError,
    r"Number of columns must be a positive integer, not 0")
row("lab.viz.plot_kernels", "a list (was AttributeError)", lambda: _viz.plot_kernels([1, 2]), TypeError,
    r"kernels must be a dict mapping a name to a 1-D kernel, got list")
row("lab.viz.plot_matrix", "1-D (was matplotlib's 'Invalid shape')", lambda: _viz.plot_matrix(np.arange(4)), ValueError,
    r"M must be a non-empty 2-D matrix, got shape \(4,\)")
row("lab.viz.plot_signals", "a list", lambda: _viz.plot_signals([1, 2, 3]), TypeError, r"signals must be a dict")
row("lab.viz.plot_spectrum", "an array", lambda: _viz.plot_spectrum(np.ones(3)), TypeError, r"spectra must be a dict")
row("lab.viz.plot_timings", "a list", lambda: _viz.plot_timings([(16, 1.0)]), TypeError, r"results must be a dict")
row("lab.viz.plot_timings", "unknown crossover key", lambda: _viz.plot_timings({"a": {16: 1.0, 32: 2.0}}, crossover=("a", "b")),
    ValueError, r"crossover must be a pair \(slow, fast\) of keys of results")
row("lab.viz.plot_io_model", "traffics an int (was AttributeError)",
    lambda: _viz.plot_io_model([8, 16], 3, bandwidth=1e9, peak_flops=1e12), TypeError,
    r"traffics must be a dict mapping a name to a list of io_model.Traffic")
row("lab.viz.plot_io_model", "one Traffic short", lambda: _viz.plot_io_model(
    [8, 16], {"fused": [io_model.fused_conv(1, 1, 8)]}, bandwidth=1e9, peak_flops=1e12), ValueError,
    r"traffics\['fused'\] must be a list of 2 io_model.Traffic, one per length, got list of 1")
row("lab.viz.plot_dft_matrix", "a number (was 'Invalid shape ()')", lambda: _viz.plot_dft_matrix(0), ValueError,
    r"F must be a non-empty 2-D matrix, got shape \(\)")
row("lab.viz.plot_butterfly_diagram", "N = 3 (drew a wrong graph)", lambda: _viz.plot_butterfly_diagram([0, 1, 2]),
    ValueError, r"perm must be a permutation of 0..N-1 with N a power of two >= 2 .*got \[0, 1, 2\]")
row("lab.viz.plot_butterfly_diagram", "not a permutation", lambda: _viz.plot_butterfly_diagram([0, 0, 1, 1]),
    ValueError, r"perm must be a permutation")
row("lab.viz.plot_factor_patterns", "fewer titles (one was dropped silently)",
    lambda: _viz.plot_factor_patterns([np.eye(2), np.eye(2)], ["a"]), ValueError,
    r"mats and titles must be lists of the same length, got list and list of 2 and 1")
row("lab.viz.plot_factor_patterns", "mats an int", lambda: _viz.plot_factor_patterns(3, 3), ValueError,
    r"mats and titles must be lists of the same length, got int and int")
row("lab.viz.plot_fft_stage", "stage beyond log2 N (drew nothing, silently)",
    lambda: _viz.plot_fft_stage([0, 2, 1, 3], 5, np.zeros(4)), ValueError,
    r"stage must be an int from 0 \(after bit reversal\) to log2 N = 2, got 5")
row("lab.viz.plot_fft_stage", "values of another length", lambda: _viz.plot_fft_stage([0, 2, 1, 3], 1, np.zeros(3)),
    ValueError, r"values must hold one value per row, 4 \(len\(perm\)\), got 3")
row("lab.viz.plot_four_step", "an int (was 'has no len()')", lambda: _viz.plot_four_step(3), TypeError,
    r"steps must be a non-empty list of \(title, 2-D array\) pairs, got 3")
row("lab.viz.plot_four_step", "a 1-D step", lambda: _viz.plot_four_step([("x", np.ones(4))]), ValueError,
    r"steps\[0\]\[1\] must be a non-empty 2-D matrix, got shape \(4,\)")
row("lab.viz.plot_butterfly_schedule", "an int (was 'has no len()')", lambda: _viz.plot_butterfly_schedule(3, 8),
    TypeError, r"stages must be a non-empty list of \(label, \[\(thread, top, bottom\), ...\]\)")
row("lab.viz.plot_butterfly_schedule", "n 0", lambda: _viz.plot_butterfly_schedule([("s", [(0, 0, 1)])], 0),
    ValueError, r"n must be the tile length, an int >= 2, got 0")
row("lab.viz.plot_memory_traffic", "an int (was 'not iterable')", lambda: _viz.plot_memory_traffic(3), TypeError,
    r"measured must be a dict mapping a name to a \(bytes_read, bytes_written\) pair, got int")
row("lab.viz.plot_memory_traffic", "a single number", lambda: _viz.plot_memory_traffic({"fused": 10}), ValueError,
    r"measured\['fused'\] must be a \(bytes_read, bytes_written\) pair, got 10")
row("lab.viz.plot_benchmark", "an empty dict (was KeyError 'results')", lambda: _viz.plot_benchmark({}), TypeError,
    r"report must be a benchmark report \(a dict with 'results' and 'config'.* with keys \[\]")
row("lab.viz.plot_benchmark_file", "missing", lambda: _viz.plot_benchmark_file("missing.json"), ValueError,
    r"path must be a benchmark JSON file, got 'missing.json' \(not found\)")
row("lab.viz.plot_spectra", "a list (was AttributeError)", lambda: _viz.plot_spectra([1]), TypeError,
    r"kernels must be a dict mapping a name to a 1-D kernel, got list")
row("lab.viz.plot_kernel_comparison", "empty kernels (was numpy's 'Invalid number of FFT data points')",
    lambda: _viz.plot_kernel_comparison([], []), ValueError, r"before and after must be non-empty kernels, got 0 and 0 taps")
row("lab.viz.plot_training_curves", "an empty dict (was KeyError 'rows')", lambda: _viz.plot_training_curves({}),
    TypeError, r"summary must be an experiment summary .* with keys \[\]")
row("lab.viz.plot_kernel_gallery", "an int (was 'not iterable')", lambda: _viz.plot_kernel_gallery(3), TypeError,
    r"kernels must be a dict mapping a name to a \(rows, L\) kernel array, got int")
row("lab.viz.plot_kernel_gallery", "no kernels of that layer",
    lambda: _viz.plot_kernel_gallery({"a/layer1": np.ones((2, 8))}), ValueError,
    r"kernels has no key ending in '/layer0' \(layer='layer0'\); its keys: \['a/layer1'\]")
row("lab.viz.plot_tap_rms", "a list", lambda: _viz.plot_tap_rms([np.ones(8)]), TypeError,
    r"kernels must be a dict mapping a name to a \(rows, L\) kernel array, got list")
row("lab.viz.plot_tap_rms", "no kernels of that layer",
    lambda: _viz.plot_tap_rms({"a/layer1": np.ones((2, 8))}), ValueError,
    r"kernels has no key ending in '/layer0' \(layer='layer0'\); its keys: \['a/layer1'\]")
row("lab.viz.plot_tap_rms", "window 0", lambda: _viz.plot_tap_rms({"a/layer0": np.ones((2, 8))}, window=0),
    ValueError, r"window must be >= 1 taps, got 0")
row("lab.viz.plot_learned_blocks", "block counts differ (a row was left blank)",
    lambda: _viz.plot_learned_blocks([np.eye(2)], [np.eye(2), np.eye(4)]), ValueError,
    r"learned and exact must hold the same number of blocks \(at least one\), got 1 and 2")
row("lab.viz.plot_learned_blocks", "a 1-D block", lambda: _viz.plot_learned_blocks([np.ones(2)], [np.eye(2)]),
    ValueError, r"learned\[0\] must be a non-empty 2-D matrix, got shape \(2,\)")

# ----------------------------------------------------------------------------- course/animations.py
row("course.animations.to_html", "an int", lambda: _anim.to_html(3), TypeError,
    r"anim must be a matplotlib FuncAnimation, got int")
row("course.animations.sliding_convolution_animation", "L 65", lambda: _anim.sliding_convolution_animation(L=65),
    ValueError, r"L must be <= 64, got 65")
row("course.animations.sliding_convolution_animation", "u 2-D",
    lambda: _anim.sliding_convolution_animation(torch.zeros(2, 3), torch.zeros(1)), ValueError,
    r"u and k must be 1-D, got shapes \(2, 3\) and \(1,\)")
row("course.animations.butterfly_animation", "n 6", lambda: _anim.butterfly_animation(n=6), ValueError,
    r"n must be a power of two, got 6")
row("course.animations.butterfly_animation", "x 2-D", lambda: _anim.butterfly_animation(torch.zeros(2, 4)), ValueError,
    r"x must be 1-D, got shape \(2, 4\)")
row("course.animations.traffic_by_launch", "L 0", lambda: _anim.traffic_by_launch(0), ValueError, r"L must be >= 1, got 0")
row("course.animations.traffic_by_launch", "L float", lambda: _anim.traffic_by_launch(4.0), TypeError,
    r"L must be an int, got float 4.0")
row("course.animations.memory_traffic_animation", "L 0", lambda: _anim.memory_traffic_animation(L=0), ValueError,
    r"L must be >= 1, got 0")


# ============================================================================ the tests
@pytest.mark.parametrize("fn_name, label, call, exc, match", ROWS, ids=[f"{r[0]}: {r[1]}" for r in ROWS])
def test_bad_input(fn_name, label, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _public_functions() -> list[str]:
    names = []
    for m in RUNG_MODULES:
        mod = importlib.import_module(f"longconv_edu.{m}")
        names += [f"{m}.{n}" for n in mod.__all__ if f"{m}.{n}" not in NOT_FUNCTIONS]
    for b in dispatch._BACKENDS.values():  # the kernels' public entry points
        names.append(f"{b.module.removeprefix('longconv_edu.')}.{b.function}")
    return sorted(set(names))


def test_every_public_function_of_the_rungs_has_rows():
    """Adding a public function to a rung module (or a backend to the registry) needs rows here."""
    covered = {r[0] for r in ROWS}
    missing = [n for n in _public_functions() if n not in covered]
    assert not missing, f"public functions without a bad-input row in tests/test_bad_inputs.py: {missing}"
    stale = sorted(covered - set(_public_functions()))
    assert not stale, f"rows for names that are no longer public: {stale}"
    for name in NOT_FUNCTIONS:
        m, n = name.rsplit(".", 1)
        assert n in importlib.import_module(f"longconv_edu.{m}").__all__, name


def test_every_module_is_in_the_table_or_says_why_not():
    import pkgutil

    import longconv_edu

    found = {m.name.removeprefix("longconv_edu.") for m in
             pkgutil.walk_packages(longconv_edu.__path__, "longconv_edu.")}
    listed = set(RUNG_MODULES) | set(ELSEWHERE)
    families = tuple(k[:-1] for k in ELSEWHERE if k.endswith(".*"))
    missing = sorted(m for m in found - listed if not m.startswith(families))
    assert missing == [], f"modules neither in RUNG_MODULES nor in ELSEWHERE: {missing}"
    assert set(RUNG_MODULES) & set(ELSEWHERE) == set()


def test_table_size():
    """The table covers every public function with several cases (a floor, so it only grows)."""
    assert len(_public_functions()) >= 60 and len(ROWS) >= 400


# ----------------------------------------------------------------------------- odd but valid layouts
BACKENDS = ["direct", "toeplitz", "fft", "butterfly", "numba", "learned_butterfly"]


def _layouts():
    g = torch.Generator().manual_seed(3)
    base_u = torch.randn(3, 2, 20, generator=g, dtype=torch.float64)
    base_k = torch.randn(2, 13, generator=g, dtype=torch.float64)
    return {
        "non-contiguous u (permuted)": (
            torch.randn(20, 3, 2, generator=g, dtype=torch.float64).permute(1, 2, 0),
            base_k,
        ),
        "strided u (every other tap)": (torch.randn(3, 2, 40, generator=g, dtype=torch.float64)[..., ::2], base_k),
        "stride-0 u (expanded batch)": (base_u[:1].expand(3, 2, 20), base_k),
        "stride-0 k (expanded channel)": (base_u, base_k[:1].expand(2, 13)),
        "non-contiguous k": (base_u, torch.randn(13, 2, generator=g, dtype=torch.float64).T),
        "L = 1": (base_u[..., :1], base_k[:, :1]),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
@pytest.mark.parametrize("backend", BACKENDS)
def test_odd_layouts_give_the_oracles_answer(backend, layout):
    u, k = _layouts()[layout]
    assert layout == "L = 1" or not (u.is_contiguous() and k.is_contiguous())
    y = dispatch.long_conv(u, k, backend=backend)
    assert y.shape == u.shape
    assert rel_err(y.numpy(), causal_conv_np(u.contiguous().numpy(), k.contiguous().numpy())) < 1e-10


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_the_input_propagates(backend):
    u = torch.randn(1, 2, 16, dtype=torch.float64)
    u[0, 1, 5] = math.nan
    y = dispatch.long_conv(u, torch.randn(2, 16, dtype=torch.float64), backend=backend)
    assert torch.isnan(y[0, 1]).any() and torch.isfinite(y[0, 0]).all()
