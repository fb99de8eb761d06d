"""The exercise checker: ``check("name", your_function)`` against the library's reference.

Checker framework for the course exercises: ``check("name", your_function)``.

Each exercise names a reference function from the library and a few inputs. ``check`` runs the
learner's function and the reference on every input and prints, for the first mismatch, what was
passed, what was expected and what came back, so the learner sees *what* is wrong, not only that
something is. It never raises for the learner's mistakes: it prints and returns False. An
unfilled exercise (raising NotImplementedError) is reported as such.

    >>> from longconv_edu.course.exercises import check, list_exercises
    >>> check("causal_fft_conv", my_fft_conv)
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["Exercise", "EXERCISES", "Named", "check", "compare", "list_exercises", "register",
           "same_value", "short"]


@dataclass(frozen=True)
class Exercise:
    name: str
    rung: int
    task: str                                   # one sentence: what to write
    reference: Callable                         # the library's answer
    cases: Callable[[], list]                   # -> list of argument tuples (built fresh each check)
    rtol: float = 1e-8                          # relative to the reference's max magnitude
    hint: str = ""
    compare: Callable | None = field(default=None)  # custom (got, expected) -> str | None


EXERCISES: dict[str, Exercise] = {}


def register(ex: Exercise) -> Exercise:
    if ex.name in EXERCISES:
        raise ValueError(f"exercise name {ex.name!r} is already registered")
    EXERCISES[ex.name] = ex
    return ex


def list_exercises(rung: int | None = None) -> list[str]:
    """Names of the registered exercises (of one rung if given), in course order."""
    return [e.name for e in sorted(EXERCISES.values(), key=lambda e: (e.rung, e.name))
            if rung is None or e.rung == rung]


def _to_np(x):
    if isinstance(x, torch.Tensor):       # resolve lazy conj/neg views (x.conj()) before numpy
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if isinstance(x, (tuple, list)):
        return [_to_np(v) for v in x]
    return np.asarray(x)


def short(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"array{x.shape} {x.dtype}"
    return repr(x)[:60]


def compare(got, want, rtol: float) -> str | None:
    """None if equal to tolerance, else a sentence saying what differs."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a sequence of {len(want)} items, got {short(got)}"
        for i, (g, w) in enumerate(zip(got, want)):
            msg = compare(g, w, rtol)
            if msg:
                return f"item {i}: {msg}"
        return None
    g, w = _to_np(got), _to_np(want)
    if g.shape != w.shape:
        return f"shape {g.shape}, expected {w.shape}"
    if g.dtype.kind != w.dtype.kind and not (g.dtype.kind in "fc" and w.dtype.kind in "fc"):
        return f"dtype {g.dtype}, expected something like {w.dtype}"
    if w.size == 0:
        return None
    err = np.abs(g.astype(np.complex128) - w.astype(np.complex128))
    scale = max(float(np.max(np.abs(w))), 1e-30)
    if not np.all(np.isfinite(err)) or float(np.max(err)) > rtol * scale:
        idx = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
        return (f"values differ: largest error {float(np.nanmax(err)):.3g} at index {tuple(map(int, idx))} "
                f"(got {g[idx]:.6g}, expected {w[idx]:.6g}; tolerance {rtol:g} x {scale:.3g})")
    return None


def check(name: str, fn: Callable, *, verbose: bool = True) -> bool:
    """Run the learner's ``fn`` against exercise ``name``'s reference; print a report; return pass/fail."""
    if name not in EXERCISES:
        raise ValueError(f"name must be one of {', '.join(map(repr, list_exercises()))}; got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be a function, got {type(fn).__name__}")
    ex = EXERCISES[name]
    say = print if verbose else (lambda *a, **k: None)
    cases = ex.cases()
    for i, args in enumerate(cases):
        want = ex.reference(*args)
        try:
            got = fn(*args)
        except NotImplementedError:
            say(f"[{name}] not filled in yet: replace the `raise NotImplementedError` with your code.")
            return False
        except Exception as e:  # the learner's bug: report it, do not crash the notebook
            frame = traceback.extract_tb(e.__traceback__)[-1]
            say(f"[{name}] case {i + 1}/{len(cases)} raised {type(e).__name__}: {e}\n"
                f"    at line {frame.lineno}: {frame.line}\n    inputs: {', '.join(short(a) for a in args)}")
            return False
        msg = (ex.compare or (lambda g, w: compare(g, w, ex.rtol)))(got, want)
        if msg:
            say(f"[{name}] case {i + 1}/{len(cases)} is wrong: {msg}\n"
                f"    inputs: {', '.join(short(a) for a in args)}" + (f"\n    hint: {ex.hint}" if ex.hint else ""))
            return False
    say(f"[{name}] all {len(cases)} cases pass.")
    return True


class Named:
    """A function with a readable repr, so a failing case prints ``circular_conv``, not an address."""

    def __init__(self, fn: Callable, name: str):
        self.fn, self.name = fn, name

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return self.name


def same_value(got, want) -> str | None:
    """Compare a bool, int or tuple-of-ints answer exactly (int 8 and float 8.0 are equal)."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, np.generic):
        got = got.item()
    if isinstance(got, list):
        got = tuple(got)
    if isinstance(got, tuple):
        got = tuple(v.item() if isinstance(v, (np.generic, torch.Tensor)) else v for v in got)
    if type(want) is bool and not isinstance(got, bool):
        return f"expected True or False, got {short(got)}"
    if type(got) is not type(want) and not (isinstance(got, (int, float)) and isinstance(want, (int, float))):
        return f"expected a {type(want).__name__} like {want!r}, got {short(got)}"
    if got != want:
        return f"got {got!r}, expected {want!r}"
    return None
