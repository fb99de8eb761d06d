"""The benchmark CLI (python -m longconv_edu bench) on tiny sizes: it runs, and its JSON is valid.

Speed itself is never asserted here (a shared machine makes timed tests flaky); these tests check
that every number the report promises is present, finite and consistent, that skips and errors
say why, and that the command works both in-process and as a real subprocess.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from longconv_edu import dispatch
from longconv_edu.__main__ import main
from longconv_edu.lab.bench import conv_flops

ROOT = Path(__file__).resolve().parent.parent
OK_FIELDS = {"seconds": float, "fft_seconds": float, "scipy_seconds": float,
             "best_speedup_vs_fft": float, "best_speedup_vs_scipy": float,
             "speedup_vs_fft": float, "speedup_vs_scipy": float, "gflops": float,
             "peak_bytes": int, "output_bytes": int, "peak_over_output": float}


def _broken_backend(u, k):
    raise RuntimeError("needs a GPU, and this machine has none")


def check_report(report, backends, lengths, rows=4):
    assert report["config"]["rows"] == rows and report["config"]["lengths"] == lengths
    assert report["roofs"]["matmul_gflops"] > 0 and report["roofs"]["copy_gbytes_per_s"] > 0
    assert "2.5 N log2 N" in report["flop_model"] and report["memory_method"]
    got = {(r["backend"], r["L"]) for r in report["results"]}
    assert got == {(b, L) for b in backends for L in lengths}
    for r in report["results"]:
        if r["status"] != "ok":
            assert r["status"] == "skipped" and r["reason"]
            continue
        for field, kind in OK_FIELDS.items():
            assert isinstance(r[field], kind), field
            assert math.isfinite(r[field]) and r[field] >= 0, field
        assert r["seconds"] > 0 and r["output_bytes"] == rows * r["L"] * 4
        assert r["speedup_vs_fft"] == pytest.approx(r["fft_seconds"] / r["seconds"])
        assert r["gflops"] == pytest.approx(conv_flops(rows, r["L"]) / r["seconds"] / 1e9)


def test_in_process_run_writes_json_and_png(tmp_path, capsys):
    rc = main(["bench", "--lengths", "16", "8", "--rows", "4", "--batch", "2", "--repeats", "2",
               "--backends", "fft", "numba", "toeplitz", "--out", str(tmp_path), "--name", "t",
               "--no-isolate", "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "t.json").read_text())
    check_report(report, ["fft", "numba", "toeplitz"], [8, 16])
    assert all(r["status"] == "ok" for r in report["results"])
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "x fft_conv" in out and "numba" in out and "t.json" in out


def test_slow_pairs_are_skipped_and_say_why(tmp_path):
    rc = main(["bench", "--lengths", "128", "256", "--rows", "4", "--repeats", "1",
               "--backends", "direct", "--time-limit", "1e-9", "--out", str(tmp_path),
               "--no-isolate", "--no-progress"])
    assert rc == 0
    rows = {r["L"]: r for r in json.loads((tmp_path / "bench.json").read_text())["results"]}
    assert rows[128]["status"] == "ok"                 # measured: it is a probe length
    assert rows[256]["status"] == "skipped"
    assert "extrapolated" in rows[256]["reason"] and "--time-limit" in rows[256]["reason"]


def test_unavailable_backend_is_skipped_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setitem(dispatch._BACKENDS, "nogpu", dispatch.Backend(
        "nogpu", "test_bench", "_broken_backend", 9, "a backend that cannot run here"))
    rc = main(["bench", "--lengths", "8", "--rows", "4", "--repeats", "1", "--backends", "nogpu",
               "--out", str(tmp_path), "--no-isolate", "--no-progress"])
    assert rc == 0
    (row,) = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert row["status"] == "skipped" and "needs a GPU" in row["reason"]


@pytest.mark.parametrize("argv, needle", [
    (["--backends", "fft", "nope"], "--backends"),
    (["--lengths", "0"], "--lengths"),
    (["--rows", "5", "--batch", "2"], "--rows"),
    (["--repeats", "0"], "--repeats"),
    (["--time-limit", "0"], "--time-limit"),
])
def test_bad_options_are_clear_errors(argv, needle, tmp_path, capsys):
    assert main(["bench", *argv, "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err
    if needle == "--backends":
        assert "'nope'" in err and all(repr(n) in err for n in dispatch.backends())
    assert not (tmp_path / "bench.json").exists()


def test_command_line_subprocess_isolates_each_backend(tmp_path):
    cmd = [sys.executable, "-m", "longconv_edu", "bench", "--lengths", "32", "--rows", "4",
           "--repeats", "1", "--backends", "numba", "--out", str(tmp_path), "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["isolated"] is True
    check_report(report, ["numba"], [32])
    assert report["results"][0]["status"] == "ok"
    assert "numba" in done.stdout


def test_flop_model():
    assert conv_flops(1, 1024) == 2 * 2.5 * 2048 * 11
    assert conv_flops(256, 1024) == 256 * conv_flops(1, 1024)


def test_plot_benchmark_draws_every_backend():
    from longconv_edu.lab.viz import plot_benchmark
    row = {"status": "ok", "fft_seconds": 2.0, "scipy_seconds": 1.0, "speedup_vs_fft": 2.0}
    report = {"config": {"rows": 4, "dtype": "float32"}, "results": [
        {**row, "backend": b, "L": L, "seconds": 1.0} for b in ("fft", "numba") for L in (8, 16)]
        + [{"backend": "direct", "L": 16, "status": "skipped", "reason": "slow"}]}
    fig = plot_benchmark(report)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["fft", "numba"] and "direct" not in labels


def test_growth_exponent_is_fitted_and_clamped():
    from longconv_edu.lab.bench import _growth
    assert _growth(32, 1.0, 128, 16.0) == pytest.approx(2.0)
    assert _growth(32, 1.0, 128, 4.0) == pytest.approx(1.0)
    assert _growth(32, 1.0, 128, 8.0) == pytest.approx(1.5)
    assert _growth(32, 1.0, 128, 0.5) == 1.0 and _growth(32, 1.0, 128, 1e6) == 2.0
    assert _growth(128, 1.0, 128, 1.0) == 2.0
