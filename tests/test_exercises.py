"""Course exercises: the notebooks, the checkers, and the reference answers.

- Every solution notebook (course/solutions/) passes every checker it calls; every exercise
  notebook (course/exercises/), run as a learner first opens it, fails each check cleanly: the
  checker returns False and says "not filled in yet", and no cell raises.
- Every registered exercise is in exactly one exercise notebook and its solution, and every
  rung has at least two.
- The checkers catch plausible wrong answers and say what is wrong; a learner's exception is
  reported, not raised.
- The reference answers written in exercises.py (rungs 5, 7, 8) agree with independent oracles:
  numpy.fft, torch's own LR schedulers, autograd Jacobians, hand counts.

Notebooks are executed by exec-ing their code cells' source in a fresh namespace (fast: no
kernel), with ``check`` wrapped to record what each call returned and printed.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from longconv_edu.course import exercises as E
from longconv_edu.course.exercises.rung5 import barrier_races

REPO = Path(__file__).resolve().parents[1]
EX_DIR = REPO / "course" / "exercises"
SOL_DIR = REPO / "course" / "solutions"
STEMS = sorted(p.stem for p in EX_DIR.glob("[0-9][0-9]_*.ipynb"))
RUNGS = range(1, 9)


def run_notebook(path: Path, monkeypatch) -> list[dict]:
    """Exec every code cell of ``path`` in order; return one record per ``check`` call."""
    calls = []
    real_check = E.check

    def recording_check(name, fn, *, verbose=True):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ok = real_check(name, fn, verbose=verbose)
        calls.append({"name": name, "ok": ok, "printed": out.getvalue(), "verbose": verbose})
        return ok

    monkeypatch.setattr(E, "check", recording_check)   # `from ... import check` picks it up
    nb = nbformat.read(path, as_version=4)
    namespace = {"__name__": "__main__"}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        assert not re.search(r"^\s*[%!]", cell.source, re.M), f"{path.name} cell {i} uses IPython syntax"
        try:
            exec(compile(cell.source, f"{path.name}[cell {i}]", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path.relative_to(REPO)} cell {i} raised {type(e).__name__}: {e}") from e
    return calls


def checked_names(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [m for c in nb.cells if c.cell_type == "code"
            for m in re.findall(r'^check\("([^"]+)"', c.source, re.M)]


# ----------------------------------------------------------------------------- the notebooks
def test_exercise_and_solution_notebooks_pair_up():
    sol = sorted(p.stem for p in SOL_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert STEMS, "no exercise notebooks in course/exercises/"
    assert STEMS == sol, f"exercises {STEMS} and solutions {sol} differ"
    for stem in STEMS:
        assert checked_names(EX_DIR / f"{stem}.ipynb") == checked_names(SOL_DIR / f"{stem}.ipynb"), stem
        nb = nbformat.read(EX_DIR / f"{stem}.ipynb", as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "longconv-edu", stem


@pytest.mark.parametrize("stem", STEMS)
def test_solution_passes_its_checkers(stem, monkeypatch):
    calls = run_notebook(SOL_DIR / f"{stem}.ipynb", monkeypatch)
    assert calls, f"solutions/{stem} calls no checker"
    failed = [c for c in calls if not c["ok"]]
    assert not failed, "\n".join(f"{c['name']}: {c['printed']}" for c in failed)
    for c in calls:
        if c["verbose"]:
            assert "cases pass" in c["printed"], c


@pytest.mark.parametrize("stem", STEMS)
def test_unfilled_exercise_fails_cleanly(stem, monkeypatch):
    calls = run_notebook(EX_DIR / f"{stem}.ipynb", monkeypatch)   # no cell may raise
    assert {c["name"] for c in calls} == set(checked_names(EX_DIR / f"{stem}.ipynb"))
    for c in calls:
        assert c["ok"] is False, f"{c['name']} passes while unfilled"
        if c["verbose"]:
            assert "not filled in yet" in c["printed"], c["printed"]


def test_every_registered_exercise_has_a_notebook():
    where = {}
    for stem in STEMS:
        for name in checked_names(EX_DIR / f"{stem}.ipynb"):
            assert name in E.EXERCISES, f"exercises/{stem} checks unknown exercise {name!r}"
            assert E.EXERCISES[name].rung == int(stem[:2]), \
                f"{name} is a rung-{E.EXERCISES[name].rung} exercise but sits in exercises/{stem}"
            where.setdefault(name, set()).add(stem)
    missing = sorted(set(E.list_exercises()) - set(where))
    assert not missing, f"registered exercises with no notebook in course/exercises/: {missing}"
    assert all(len(v) == 1 for v in where.values()), where


@pytest.mark.parametrize("rung", RUNGS)
def test_every_rung_has_two_exercises(rung):
    assert len(E.list_exercises(rung)) >= 2, f"rung {rung} has exercises {E.list_exercises(rung)}"


# ----------------------------------------------------------------------------- the checkers
def _wrong_butterflies(n, span):                  # the twiddle of the group, not of the FFT
    top, bottom, e = E.thread_butterflies(n, span)
    return top, bottom, e * (2 * span) // n if n > 2 else e + 1


def _wrong_plan(L, itemsize, smem):               # inner = the largest tile that fits, unbalanced
    N = 1 << max(1, (2 * L - 1).bit_length())
    t = 1 << ((smem // (2 * itemsize)).bit_length() - 1)
    return (N, 1, N) if N <= t else (N, 3, t)


def _wrong_block_init(n, H, inverse=False):       # inverse without the 1/n
    F = E.dft_block_init_reference(n, H)
    return F.conj() if inverse else F


WRONG = {
    "thread_butterflies": _wrong_butterflies,
    "shared_memory_plan": _wrong_plan,
    "barrier_races": lambda n, T, h: tuple(                            # owner q, not thread q % T
        p for p in range(n) if (p // (2 * h)) * h + p % h != (p // h) * (h // 2) + p % (h // 2)),
    "rfft_from_half_size_fft": lambda x: torch.fft.fft(x)[..., : x.shape[-1] // 2],
    "is_causal": lambda fn, L: True,
    "lr_schedule": lambda step, warmup, total: (                        # warmup reaches 1 too early
        (step + 1) / warmup if step < warmup else
        (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))) / 2),
    "dft_block_init": _wrong_block_init,
    "monarch_flops": lambda n, factors: 8 * n * sum(factors),          # forgets the twiddles
    "block_drift": lambda blocks: torch.linalg.matrix_norm(
        blocks - torch.fft.fft(torch.eye(blocks.shape[-1], dtype=blocks.dtype), dim=0)).real,
    "bidirectional_fft_conv": lambda u, k: torch.fft.irfft(
        torch.fft.rfft(u, n=2 * u.shape[-1]) * torch.fft.rfft(k, n=2 * u.shape[-1]),
        n=2 * u.shape[-1])[..., : u.shape[-1]],                       # anti-causal taps not flipped
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_checker_catches_a_plausible_wrong_answer(name, capsys):
    assert E.check(name, WRONG[name]) is False
    out = capsys.readouterr().out
    assert f"[{name}]" in out and "is wrong" in out, out
    if E.EXERCISES[name].hint:
        assert "hint:" in out


def test_checker_reports_a_learners_exception_without_raising(capsys):
    def broken(step, warmup_steps, total_steps):
        return 1 / (step - step)
    assert E.check("lr_schedule", broken) is False
    out = capsys.readouterr().out
    assert "raised ZeroDivisionError" in out and "1 / (step - step)" in out, out


def test_check_rejects_unknown_names_and_non_functions():
    with pytest.raises(ValueError, match="name must be one of"):
        E.check("no_such_exercise", print)
    with pytest.raises(TypeError, match="fn must be a function"):
        E.check("lr_schedule", 3)


# ----------------------------------------------------------------------------- reference answers
def _bit_reverse(n):
    bits = n.bit_length() - 1
    return [int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)]


@given(st.integers(1, 10), st.integers(0, 2**31 - 1))
def test_thread_butterflies_make_an_fft(log_n, seed):
    """Oracle: the kernel's DIF stages run with the reference map give numpy.fft.fft, bit-reversed."""
    n = 2 ** log_n
    g = np.random.default_rng(seed)
    x = g.standard_normal(n) + 1j * g.standard_normal(n)
    buf = x.copy()
    h = n // 2
    while h >= 1:
        top, bottom, e = E.thread_butterflies(n, h)
        assert len(top) == n // 2
        assert sorted(np.concatenate([top, bottom]).tolist()) == list(range(n))  # each element once
        a, b = buf[top], buf[bottom]
        buf[top], buf[bottom] = a + b, (a - b) * np.exp(-2j * np.pi * e / n)
        h //= 2
    np.testing.assert_allclose(buf[_bit_reverse(n)], np.fft.fft(x), rtol=0, atol=1e-12 * n * np.abs(x).max())


def test_thread_butterflies_match_the_traced_cuda_kernel():
    """Oracle: the (thread, top, bottom) the CUDA kernel really used, recorded by its tracer."""
    trace = pytest.importorskip("longconv_edu.kernels.trace")
    u = torch.randn(1, 1, 8, dtype=torch.float64)
    t = trace.trace_conv(u, torch.randn(1, 8, dtype=torch.float64), threads=8, record=True)
    stages = trace.butterfly_schedule(t, launch=0)
    forward = [(label, bs) for label, bs in stages if label.startswith("forward")]
    assert len(forward) == 4                                       # n = 16: spans 8, 4, 2, 1
    for label, butterflies in forward:
        span = int(label.split()[-1])
        top, bottom, _ = E.thread_butterflies(16, span)
        assert sorted(butterflies) == [(q, int(top[q]), int(bottom[q])) for q in range(8)], label


@given(st.integers(1, 100_000), st.sampled_from([4, 8]), st.integers(64, 256 * 1024))
def test_shared_memory_plan_properties(L, itemsize, smem):
    try:
        N, passes, inner = E.shared_memory_plan(L, itemsize, smem)
    except ValueError as e:                                  # more than two levels of tiles
        assert "L=" in str(e) or "length" in str(e)
        return
    assert N & (N - 1) == 0 and N >= 2 * L and (N == 2 or N // 2 < 2 * L)   # smallest power of 2
    if passes == 1:
        assert inner == N and 2 * N * itemsize <= smem
    else:
        outer = N // inner
        assert passes == 3 and 2 * N * itemsize > smem
        assert inner & (inner - 1) == 0 and outer * inner == N
        assert 2 * inner * itemsize <= smem and 2 * outer * itemsize <= smem   # both tiles fit


def test_shared_memory_plan_by_hand():
    # L = 1024 fp32: N = 2048 complex = 16 KiB: fits the 48 KiB default
    assert E.shared_memory_plan(1024, 4, 48 * 1024) == (2048, 1, 2048)
    # L = 4096 fp32: N = 8192 = 64 KiB: over 48 KiB (three passes, 2^13 = 64 x 128), under 228 KiB
    assert E.shared_memory_plan(4096, 4, 48 * 1024) == (8192, 3, 128)
    assert E.shared_memory_plan(4096, 4, 228 * 1024) == (8192, 1, 8192)
    assert E.shared_memory_plan(1, 8, 1024) == (2, 1, 2)


def _causal_by_jacobian(fn, L):
    """Oracle: fn is causal iff d y[t] / d u[s] == 0 for every s > t (strictly upper part)."""
    u = torch.randn(1, 1, L, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    J = torch.autograd.functional.jacobian(lambda v: fn(v.view(1, 1, L)).view(L), u.view(L))
    return bool(torch.all(torch.triu(J, diagonal=1).abs() < 1e-12))


def test_is_causal_agrees_with_the_jacobian():
    cases = E.EXERCISES["is_causal"].cases()
    verdicts = [E.is_causal(fn, L) for fn, L in cases]
    assert verdicts == [_causal_by_jacobian(fn, L) for fn, L in cases]
    assert True in verdicts and False in verdicts


def test_lr_schedule_reference_matches_torch_schedulers():
    """Oracle: torch's LinearLR (warmup) and CosineAnnealingLR (decay), stepped like a trainer."""
    total, warmup = 50, 8

    def lrs(scheduler_factory, steps):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = scheduler_factory(opt)
        out = []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    warm = lrs(lambda o: torch.optim.lr_scheduler.LinearLR(
        o, start_factor=1 / (warmup + 1), end_factor=warmup / (warmup + 1), total_iters=warmup - 1), warmup)
    decay = lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total - warmup), total - warmup)
    ours = [E.EXERCISES["lr_schedule"].reference(s, warmup, total) for s in range(total)]
    np.testing.assert_allclose(ours, warm + decay, rtol=1e-12)


def test_rung8_references_by_hand_and_numpy():
    init, flops, drift = (E.EXERCISES[n].reference for n in ("dft_block_init", "monarch_flops", "block_drift"))
    for n in (1, 2, 5, 16):
        j = np.arange(n)
        F = np.exp(-2j * np.pi * np.outer(j, j) / n)
        blocks = init(n, 3)
        assert blocks.shape == (3, n, n)
        np.testing.assert_allclose(blocks.numpy(), np.broadcast_to(F, (3, n, n)), atol=1e-12)
        np.testing.assert_allclose(init(n, 1, True)[0].numpy() @ F, np.eye(n), atol=1e-12)
    b = init(4, 2)
    b[0, 0, 0] = 7
    assert b[1, 0, 0] == 1, "channels must be independent copies"
    assert flops(16, (16,)) == 8 * 16 * 16                                  # one dense DFT: 8 n^2
    assert flops(16, (4, 4)) == 8 * 16 * 4 * 2 + 6 * 16                     # 1024 + 96
    assert flops(4096, (16, 16, 16)) / (5 * 4096 * 12) == pytest.approx(6.6)
    g = np.random.default_rng(4)
    n = 8
    F = np.fft.fft(np.eye(n), axis=0)
    noisy = F + np.array([0, 0.1, 1.0]).reshape(3, 1, 1) * (g.standard_normal((3, n, n)) + 1j * g.standard_normal((3, n, n)))
    want = [np.linalg.norm(m - F) / np.linalg.norm(F) for m in noisy]
    np.testing.assert_allclose(drift(torch.from_numpy(noisy)).numpy(), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("call, exc, arg", [
    (lambda: E.thread_butterflies(12, 1), ValueError, "n"),
    (lambda: E.thread_butterflies(8, 8), ValueError, "span"),
    (lambda: E.thread_butterflies(8, 3), ValueError, "span"),
    (lambda: E.thread_butterflies(8.0, 1), TypeError, "n"),
    (lambda: barrier_races(12, 2, 2), ValueError, "n"),
    (lambda: barrier_races(16, 16, 2), ValueError, "threads"),
    (lambda: barrier_races(16, 4, 1), ValueError, "span"),
    (lambda: E.shared_memory_plan(0, 4, 1024), ValueError, "L"),
    (lambda: E.shared_memory_plan(16, 2, 1024), ValueError, "itemsize"),
    (lambda: E.shared_memory_plan(16, 4, 8), ValueError, "smem_bytes"),
    (lambda: E.is_causal(3, 8), TypeError, "fn"),
    (lambda: E.is_causal(torch.relu, 0), ValueError, "L"),
    (lambda: E.is_causal(torch.relu, 4, tol=-1.0), ValueError, "tol"),
])
def test_reference_bad_input(call, exc, arg):
    with pytest.raises(exc, match=rf"\b{arg}\b"):
        call()
