"""Input validation for every public function of longconv_edu, in one place.

Every check raises ``TypeError`` (wrong kind of thing or dtype) or ``ValueError`` (right kind,
wrong shape, length or range) with a message that names the argument, says what it got, and says
what it needs. Functions call these checks first, so bad input never reaches an index deep inside
a loop or a kernel.

Shape convention used throughout the library: input ``u`` is (B, H, L), kernel ``k`` is (H, Lk).
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__} of shape {tuple(x.shape)}, dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def _cast_hint(got: torch.dtype, allowed) -> str:
    """How to convert ``got`` to one of ``allowed``, never by a cast that silently loses data."""
    allowed = tuple(allowed)
    if all(d.is_complex for d in allowed):
        return f" (convert with .to({allowed[0]}))"
    if got.is_complex:
        return (" (a complex tensor: take .real or .abs() explicitly if that is meant; "
                ".float() would silently drop the imaginary part)")
    if set(allowed) <= set(FLOAT_DTYPES):
        return " (cast with .float() or .double())"
    return ""


def check_tensor(x, name: str, *, ndim: int | tuple[int, ...] | None = None,
                 dtypes=FLOAT_DTYPES, shape_doc: str | None = None) -> torch.Tensor:
    """Check that ``x`` is a torch tensor of an allowed dtype and rank; return it."""
    if not isinstance(x, torch.Tensor):
        hint = " (wrap a NumPy array with torch.from_numpy)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}{hint}")
    if dtypes is not None and x.dtype not in dtypes:
        allowed = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype {allowed}, got {x.dtype}{_cast_hint(x.dtype, dtypes)}")
    if ndim is not None:
        ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in ndims:
            want = shape_doc or " or ".join(f"{d}-D" for d in ndims)
            raise ValueError(f"{name} must be {want}, got {x.ndim}-D shape {tuple(x.shape)}")
    return x


def check_same(u: torch.Tensor, k: torch.Tensor, name_u: str = "u", name_k: str = "k") -> None:
    """``u`` and ``k`` must share dtype and device (no silent casts or copies)."""
    if u.dtype != k.dtype:
        raise TypeError(f"{name_k} has dtype {k.dtype} but {name_u} has dtype {u.dtype}; "
                        f"they must match (cast one with .to({name_u}.dtype))")
    if u.device != k.device:
        raise ValueError(f"{name_k} is on device {k.device} but {name_u} is on device {u.device}; "
                         f"they must be on the same device (move one with .to({name_u}.device))")


def check_conv_inputs(u, k, *, name_u: str = "u", name_k: str = "k",
                      max_kernel_len: str = "L") -> tuple[int, int, int, int]:
    """Validate a (B, H, L) input and an (H, Lk) kernel for a causal long convolution.

    ``max_kernel_len`` says how long the kernel may be: ``"L"`` (causal, 1 <= Lk <= L) or
    ``"2L"`` (bidirectional, Lk == 2L exactly). Returns (B, H, L, Lk).
    """
    check_tensor(u, name_u, ndim=3, shape_doc="3-D (B, H, L)")
    check_tensor(k, name_k, ndim=2, shape_doc="2-D (H, Lk)")
    check_same(u, k, name_u, name_k)
    B, H, L = u.shape
    Hk, Lk = k.shape
    if L < 1:
        raise ValueError(f"{name_u} must have sequence length L >= 1, got shape {tuple(u.shape)}")
    if Hk != H:
        raise ValueError(f"{name_k} has H={Hk} channels (shape {tuple(k.shape)}) but {name_u} has "
                         f"H={H} (shape {tuple(u.shape)}); one kernel per channel is needed")
    if max_kernel_len == "2L":
        if Lk != 2 * L:
            raise ValueError(f"{name_k} must have length 2L = {2 * L} for a bidirectional "
                             f"convolution (L causal taps then L anti-causal taps), got Lk={Lk}")
    else:
        check_kernel_length(Lk, L, name_k, k.shape)
    return B, H, L, Lk


def check_kernel_length(Lk: int, L: int, name: str = "k", shape=None) -> int:
    """A causal kernel's length must satisfy 1 <= Lk <= L (the input length); return Lk."""
    if not 1 <= Lk <= L:
        got = f" (shape {tuple(shape)})" if shape is not None else ""
        raise ValueError(f"{name} must have length 1 <= Lk <= L = {L}, got Lk={Lk}{got}")
    return Lk


def check_no_grad(what: str, **tensors: torch.Tensor) -> None:
    """A compiled (Numba) path returns a plain tensor with no autograd graph: refuse an input that
    requires grad (while grad is enabled) instead of silently cutting its gradient."""
    if not torch.is_grad_enabled():
        return
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(f"{name} requires grad, but {what} is compiled by Numba and runs outside "
                             f"autograd: its result would carry no gradient to {name}. Use jit=False "
                             f"(autograd works), or pass {name}.detach() / call it under torch.no_grad()")


def check_bool(x, name: str) -> bool:
    """Check that ``x`` is True or False (a NumPy bool too; not 0/1, None, a string or a tensor)."""
    if not isinstance(x, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(x)}")
    return bool(x)


def check_dtype(dtype, name: str = "dtype", allowed=FLOAT_DTYPES) -> torch.dtype:
    """Check that ``dtype`` is one of the allowed torch dtypes (float32/float64 by default)."""
    allowed = tuple(allowed)
    if dtype not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise TypeError(f"{name} must be {want}, got {dtype!r}")
    return dtype


def check_int(x, name: str, *, min: int | None = None, max: int | None = None,
              odd: bool = False, power_of_two: bool = False) -> int:
    """Check that ``x`` is an integer (bools rejected) within the given range; return it as int."""
    if isinstance(x, bool) or not isinstance(x, Integral):
        raise TypeError(f"{name} must be an int, got {_describe(x)}")
    x = int(x)
    if min is not None and x < min:
        raise ValueError(f"{name} must be >= {min}, got {x}")
    if max is not None and x > max:
        raise ValueError(f"{name} must be <= {max}, got {x}")
    if odd and x % 2 == 0:
        raise ValueError(f"{name} must be odd, got {x}")
    if power_of_two and (x < 1 or x & (x - 1)):
        raise ValueError(f"{name} must be a power of two, got {x}")
    return x


def check_float(x, name: str, *, min: float | None = None, max: float | None = None,
                min_inclusive: bool = True, max_inclusive: bool = True) -> float:
    """Check that ``x`` is a finite real number within the given range; return it as float."""
    if isinstance(x, bool) or not isinstance(x, Real):
        raise TypeError(f"{name} must be a real number, got {_describe(x)}")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if min is not None and (x < min or (not min_inclusive and x == min)):
        raise ValueError(f"{name} must be {'>=' if min_inclusive else '>'} {min}, got {x}")
    if max is not None and (x > max or (not max_inclusive and x == max)):
        raise ValueError(f"{name} must be {'<=' if max_inclusive else '<'} {max}, got {x}")
    return x


def check_choice(x, name: str, choices) -> str:
    """Check that ``x`` is one of ``choices``; the error lists them."""
    choices = list(choices)
    if x not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {x!r}")
    return x


def is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


# ----------------------------------------------------------------------------- cost guards
#: Work a single call may be estimated to need before it is refused up front (see check_cost).
MAX_SECONDS = 600.0
#: Memory estimates below this are never checked: reading /proc/meminfo would cost more than they risk.
CHECKED_BYTES = 2 ** 28


def available_bytes() -> int:
    """Memory the system can still give this process (MemAvailable; 4 GiB if unknown)."""
    kib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
    except OSError:
        pass
    return (kib or 4 * 2**20) * 1024


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units up to EiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024:
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"


def check_cost(what: str, *, seconds: float | None = None, nbytes: float | None = None,
               how: str = "", hint: str = "") -> None:
    """Refuse, before any work, a call estimated to run longer than ``MAX_SECONDS`` or to need
    more memory than is available. ``how`` says how the estimate was made; ``hint`` what to use
    instead. The estimate is a model (an order of magnitude), which is all a refusal needs.
    Estimates under ``CHECKED_BYTES`` (256 MiB) are let through without looking."""
    if seconds is not None and seconds > MAX_SECONDS:
        raise ValueError(f"{what} would take ~{seconds:.3g} s{' (' + how + ')' if how else ''}, "
                         f"over the {MAX_SECONDS:g} s limit (longconv_edu._checks.MAX_SECONDS); "
                         f"refused before starting{'; ' + hint if hint else ''}")
    if nbytes is not None and nbytes >= CHECKED_BYTES:
        free = available_bytes()
        if nbytes > free:
            raise ValueError(f"{what} would need ~{format_bytes(nbytes)} of memory"
                             f"{' (' + how + ')' if how else ''}, more than the "
                             f"{format_bytes(free)} available; refused before allocating"
                             f"{'; ' + hint if hint else ''}")
