"""Timing helpers shared by the notebooks' small live timings and the benchmark CLI.

``time_call`` returns the median of several wall-clock runs after warm-up (JIT compilation and
caches stay out of the number). Timings are measurements of this machine at this moment: the
notebooks mark them so nbval does not compare them, and the benchmark reports ratios against
torch.fft measured in the same run, which survive a busy machine better than seconds do.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from ._checks import check_choice, check_int

__all__ = ["time_call", "sweep", "loglog_slope", "crossover"]


def time_call(fn: Callable, *args, repeats: int = 5, warmup: int = 1, min_time: float = 0.0,
              stat: str = "median", clock: str = "wall", **kwargs) -> float:
    """Median seconds (wall clock) of ``fn(*args, **kwargs)`` over ``repeats`` runs after ``warmup``.

    ``stat="min"`` reports the fastest run instead: on a machine shared with other work, noise only
    ever adds time, so the minimum is the steadier estimate of what the call itself costs.
    ``clock="cpu"`` counts the CPU time of this process (``time.process_time``) instead of wall
    time: time the scheduler gives to other programs is not counted, so single-threaded code times
    the same on a busy shared machine as on an idle one. (Multi-threaded code sums its threads'
    CPU time, which is not its wall time; use "wall" there.)

    ``min_time``: if one run is shorter than this, each timed sample loops the call until it
    lasts at least that long and reports the per-call time (steadier for microsecond calls).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    repeats = check_int(repeats, "repeats", min=1)
    warmup = check_int(warmup, "warmup", min=0)
    stat = check_choice(stat, "stat", ("median", "min"))
    now = {"wall": time.perf_counter, "cpu": time.process_time}[check_choice(clock, "clock", ("wall", "cpu"))]
    for _ in range(warmup):
        fn(*args, **kwargs)
    samples = []
    for _ in range(repeats):
        n, t0 = 0, now()
        while True:
            fn(*args, **kwargs)
            n += 1
            elapsed = now() - t0
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples) if stat == "median" else min(samples)


def sweep(fns: dict[str, Callable], lengths, make_inputs: Callable[[int], tuple], *,
          repeats: int = 3, skip: Callable[[str, int], bool] | None = None,
          progress: bool = True, stat: str = "median",
          clock: str = "wall") -> dict[str, dict[int, float]]:
    """Time each named function over each length: {name: {L: seconds}} (skipped pairs absent).

    make_inputs(L) builds the arguments once per length, shared by every function, so all are
    timed on the same data. ``skip(name, L)`` leaves out pairs that would take too long.
    ``stat`` ("median" or "min") and ``clock`` ("wall" or "cpu") are passed to ``time_call``.
    """
    from tqdm.auto import tqdm

    lengths = [check_int(L, "lengths[i]", min=1) for L in lengths]
    check_choice(stat, "stat", ("median", "min"))
    check_choice(clock, "clock", ("wall", "cpu"))
    out: dict[str, dict[int, float]] = {name: {} for name in fns}
    jobs = [(L, name) for L in lengths for name in fns]
    bar = tqdm(jobs, desc="timing", disable=not progress, leave=False)
    args = {}
    for L, name in bar:
        if skip is not None and skip(name, L):
            continue
        if L not in args:
            args = {L: make_inputs(L)}
        bar.set_postfix_str(f"{name} L={L}")
        out[name][L] = time_call(fns[name], *args[L], repeats=repeats, stat=stat,
                                 clock=clock)
    return out


def _positive(values, name: str) -> np.ndarray:
    """values as a 1-D float array of positive finite numbers (a log is taken of each)."""
    a = np.asarray(values, float).ravel()
    bad = a[~(np.isfinite(a) & (a > 0))]
    if bad.size:
        raise ValueError(f"{name} must all be positive and finite (their logarithms are taken), got "
                         f"{bad[:3].tolist()}")
    return a


def loglog_slope(lengths, seconds) -> float:
    """Least-squares slope of log(seconds) against log(L): ~1 for O(L log L) at large L, ~2 for O(L^2)."""
    x, y = np.asarray(lengths, float).ravel(), np.asarray(seconds, float).ravel()
    if x.size != y.size:
        raise ValueError(f"lengths and seconds must have the same number of points, got {x.size} and {y.size}")
    if x.size < 2:
        raise ValueError(f"lengths must hold at least 2 points to fit a slope, got {x.size}")
    x, y = np.log(_positive(x, "lengths")), np.log(_positive(y, "seconds"))
    if np.ptp(x) == 0:
        raise ValueError(f"lengths must hold at least 2 different lengths to fit a slope, got {lengths}")
    return float(np.polyfit(x, y, 1)[0])


def crossover(slow: dict, fast: dict) -> float | None:
    """The length L from which ``fast`` stays faster than ``slow``: {L: seconds} each.

    Over the lengths both were timed at, find the last one where ``fast`` is not yet faster and
    interpolate, on log-log axes, to where the two curves cross before the next length. Returns
    None when ``fast`` is never faster, or already faster at every common length (no crossing
    was measured), so a caller never marks a crossover that the data do not show.
    """
    if not isinstance(slow, dict) or not isinstance(fast, dict):
        raise TypeError(f"slow and fast must be dicts {{L: seconds}}, got "
                        f"{type(slow).__name__} and {type(fast).__name__}")
    common = sorted(set(slow) & set(fast))
    if len(common) < 2:
        raise ValueError(f"slow and fast must share at least 2 lengths, got {len(common)} in common")
    _positive(common, "the lengths of slow and fast")
    _positive([slow[L] for L in common], "the seconds of slow")
    _positive([fast[L] for L in common], "the seconds of fast")
    gap = [np.log(slow[L]) - np.log(fast[L]) for L in common]   # > 0 where fast is faster
    if gap[-1] <= 0 or all(g > 0 for g in gap):
        return None
    i = max(j for j, g in enumerate(gap) if g <= 0)               # last length fast still loses
    x0, x1 = np.log(common[i]), np.log(common[i + 1])
    g0, g1 = gap[i], gap[i + 1]
    return float(np.exp(x0 + (x1 - x0) * (-g0) / (g1 - g0)))
