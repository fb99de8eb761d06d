"""timing: the slope fit and the crossover finder against answers worked out by hand.

time_call and sweep are exercised for what they return, not how fast anything is (speed is the
benchmark's business): a sleep-free call with a counter shows warm-up and repeats are honoured.
"""
import math

import pytest

from longconv_edu.timing import crossover, loglog_slope, sweep, time_call


def test_loglog_slope_recovers_power_laws():
    Ls = [8, 16, 64, 1000]
    for p in (0.5, 1.0, 2.0):
        assert loglog_slope(Ls, [3e-7 * L ** p for L in Ls]) == pytest.approx(p, abs=1e-12)
    with pytest.raises(ValueError, match="lengths must hold at least 2"):
        loglog_slope([8], [1.0])


def test_crossover_interpolates_on_log_axes():
    Ls = [16, 32, 64, 128, 256, 512]
    slow = {L: 1e-8 * L ** 2 for L in Ls}
    fast = {L: 1e-6 * L for L in Ls}                  # equal where 1e-8 L^2 = 1e-6 L: L = 100
    assert crossover(slow, fast) == pytest.approx(100.0, rel=1e-9)
    # a tie at a measured length counts as "not yet faster": the crossover starts there
    tie = {L: (slow[L] if L <= 128 else slow[L] / 10) for L in Ls}
    assert crossover(slow, tie) == pytest.approx(128.0)


def test_crossover_uses_the_last_loss_and_common_lengths_only():
    # fast wins at 32, loses again at 64 (noise), wins from 128 on: the crossover is in (64, 128)
    slow = {16: 1.0, 32: 2.0, 64: 4.0, 128: 8.0, 256: 16.0, 999: 1.0}
    fast = {16: 2.0, 32: 1.0, 64: 8.0, 128: 2.0, 256: 2.0}
    L = crossover(slow, fast)
    assert 64 < L < 128
    # gap (log slow - log fast) goes from log(1/2) at 64 to log(4) at 128: a third of the way
    assert math.log2(L) == pytest.approx(6 + 1 / 3)


def test_crossover_none_when_not_measured():
    Ls = [16, 32, 64]
    assert crossover({L: 1.0 for L in Ls}, {L: 2.0 for L in Ls}) is None     # never faster
    assert crossover({L: 2.0 for L in Ls}, {L: 1.0 for L in Ls}) is None     # always faster
    assert crossover({16: 2.0, 32: 1.0, 64: 1.0}, {16: 1.0, 32: 2.0, 64: 2.0}) is None  # loses at the end


def test_crossover_bad_input():
    with pytest.raises(TypeError, match="slow and fast must be dicts"):
        crossover([1.0], {16: 1.0})
    with pytest.raises(ValueError, match="slow and fast must share at least 2 lengths, got 1"):
        crossover({16: 1.0, 32: 1.0}, {16: 1.0, 64: 1.0})


def test_time_call_and_sweep_call_what_they_are_given():
    calls = []
    t = time_call(lambda x: calls.append(x), 7, repeats=3, warmup=2)
    assert calls == [7] * 5 and t >= 0
    out = sweep({"a": lambda n: None, "b": lambda n: None}, [1, 4], lambda L: (L,), repeats=1,
                skip=lambda name, L: name == "b" and L > 1, progress=False)
    assert set(out) == {"a", "b"} and set(out["a"]) == {1, 4} and set(out["b"]) == {1}
    with pytest.raises(TypeError, match="fn must be callable"):
        time_call(3)


def test_time_call_stat_min_is_the_fastest_sample():
    import time
    delays = iter([0.0, 0.02, 0.0, 0.02])          # warm-up, then three timed runs: slow, fast, slow
    fn = lambda: time.sleep(next(delays))          # noqa: E731
    assert time_call(fn, repeats=3, warmup=1, stat="min") < 0.015
    with pytest.raises(ValueError, match="stat must be one of 'median', 'min'; got 'mean'"):
        time_call(lambda: None, stat="mean")


def test_time_call_cpu_clock_does_not_count_sleeping():
    import time
    wall = time_call(time.sleep, 0.01, repeats=1, warmup=0)
    cpu = time_call(time.sleep, 0.01, repeats=1, warmup=0, clock="cpu")
    assert wall >= 0.01 and cpu < 0.005             # sleeping uses no CPU
    busy = time_call(sum, range(200_000), repeats=1, warmup=0, clock="cpu")
    assert busy > 0
    with pytest.raises(ValueError, match="clock must be one of 'wall', 'cpu'; got 'gpu'"):
        time_call(lambda: None, clock="gpu")
    with pytest.raises(ValueError, match="clock must be one of"):
        sweep({"a": lambda n: None}, [1], lambda L: (L,), clock="gpu", progress=False)
