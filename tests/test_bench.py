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
from longconv_edu.io_model import fft_flops
from longconv_edu.lab import bench
from longconv_edu.lab.bench import PEERS, conv_flops

ROOT = Path(__file__).resolve().parent.parent
OK_FIELDS = {"seconds": float, "fft_seconds": float, "scipy_seconds": float,
             "best_speedup_vs_fft": float, "best_speedup_vs_scipy": float,
             "speedup_vs_fft": float, "speedup_vs_scipy": float, "gflops": float,
             "peak_bytes": int, "output_bytes": int, "peak_over_output": float,
             "speedup_vs_best_peer": float, "best_sample_speedup_vs_best_peer": float,
             "fwd_bwd_seconds": float, "fft_fwd_bwd_seconds": float,
             "fwd_bwd_speedup_vs_fft": float}


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
        assert set(r["peer_seconds"]) == set(PEERS)           # pyfftw and ducc0 are pinned
        best = min(r["peer_seconds"], key=r["peer_seconds"].get)
        assert r["best_peer"] == best
        assert r["speedup_vs_best_peer"] == pytest.approx(r["peer_seconds"][best] / r["seconds"])
        assert r["fftw_plan_seconds"] > 0 and isinstance(r["fits_l2"], bool)
        assert len(r["load_average"]) == 2
    assert report["load_average_start"] is not None and report["load_average_finish"] is not None
    assert "transforms the kernel on every call" in report["peer_note"]


@pytest.mark.slow                    # measures roofs, compiles the numba backend, times fwd+bwd (~1 min)
def test_in_process_run_writes_json_and_png(tmp_path, capsys):
    rc = main(["bench", "--lengths", "16", "8", "--rows", "4", "--batch", "2", "--repeats", "2",
               "--backends", "fft", "numba", "toeplitz", "--out", str(tmp_path), "--name", "t",
               "--no-isolate", "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "t.json").read_text())
    check_report(report, ["fft", "numba", "toeplitz"], [8, 16])
    assert all(r["status"] == "ok" for r in report["results"])
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = bench.peer_table(report, "numba")
    assert [r["L"] for r in table] == [8, 16] and all(r["x best peer"] > 0 for r in table)
    md = bench.peer_table_markdown(report, "numba")
    assert md.startswith("| L | ms |") and "best peer" in md and len(md.splitlines()) == 4
    out = capsys.readouterr().out
    assert "best peer" in out and "fftw ms" in out and "ducc0 ms" in out and "t.json" in out


@pytest.mark.slow                    # measures the roofs first (15-20 s on 2 shared cores)
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
    (["--batch", "0"], "--batch must be an integer >= 1, got 0"),      # blamed --rows before
    (["--fwd-bwd-max", "-1"], "--fwd-bwd-max"),
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


@pytest.mark.slow                    # a real subprocess per backend
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


def test_flop_model_is_io_models_count(monkeypatch):
    """One count of FFT flops: bench asks io_model.fft_flops instead of repeating the formula."""
    monkeypatch.setattr(bench, "fft_flops", lambda N, real_input=False: 1.0)
    assert conv_flops(3, 1024) == 6.0
    assert fft_flops(2048, real_input=True) == 2.5 * 2048 * 11


def test_unwritable_out_is_a_clear_error_before_any_measurement(tmp_path, capsys, monkeypatch):
    """Issue 15 #7: an unwritable --out failed with a traceback after every measurement.

    A folder under a regular file cannot be created, even by root (a read-only folder can)."""
    f = tmp_path / "file"
    f.write_text("x")
    measured = []
    monkeypatch.setattr(bench, "benchmark", lambda *a, **kw: measured.append(1))
    monkeypatch.setattr(bench, "benchmark_block", lambda *a, **kw: measured.append(1))
    for extra in ([], ["--block"]):
        rc = main(["bench", "--lengths", "8", "--rows", "4", "--backends", "fft",
                   "--out", str(f / "sub"), "--no-progress", *extra])
        assert rc == 2 and not measured
        err = capsys.readouterr().err
        assert "--out" in err and "not a writable folder" in err and "Traceback" not in err


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["bench", "--lengths", "8", "--rows", "4", "--backends", "fft", "--out", str(f),
                 "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_peers_compute_the_same_convolution():
    """Every peer is the causal convolution (oracle: fft_conv in float64), kernel shorter than u."""
    import torch
    u = torch.randn(2, 3, 50, dtype=torch.float64)
    k = torch.randn(3, 20, dtype=torch.float64)
    ref = torch.from_numpy(
        __import__("oracles").causal_conv_np(u.numpy(), k.numpy()))
    peers, plan_s = bench.make_peers(2, 3, 50, "float64", 1)
    assert set(peers) == set(PEERS) and plan_s > 0
    for name, fn in peers.items():
        out = fn(u, k) if name == "torch.fft" else fn(u.numpy(), k.numpy())
        assert torch.allclose(torch.as_tensor(out), ref, atol=1e-10), name


def test_block_mode_times_a_layer_per_backend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    rc = main(["bench", "--block", "--lengths", "16", "--rows", "4", "--batch", "2",
               "--repeats", "1", "--backends", "fft", "numba", "--out", str(tmp_path),
               "--name", "blk", "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "blk.json").read_text())
    assert report["mode"] == "block" and report["omp_wait_policy"] == "PASSIVE"    # recorded
    rows = {r["backend"]: r for r in report["results"]}
    assert set(rows) == {"fft", "numba"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["fft"]["speedup_vs_fft"] == pytest.approx(1.0)
    assert "LongConv block" in capsys.readouterr().out


def test_plot_benchmark_draws_every_backend():
    from longconv_edu.lab.viz import plot_benchmark
    row = {"status": "ok", "fft_seconds": 2.0, "scipy_seconds": 1.0, "speedup_vs_fft": 2.0}
    report = {"config": {"rows": 4, "dtype": "float32"}, "results": [
        {**row, "backend": b, "L": L, "seconds": 1.0} for b in ("fft", "numba") for L in (8, 16)]
        + [{"backend": "direct", "L": 16, "status": "skipped", "reason": "slow"}]}
    fig = plot_benchmark(report)
    legend = fig.axes[0].get_legend() or fig.legends[0]      # the course style puts it under the axes
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[:2] == ["fft", "numba"] and "direct" not in labels


def test_growth_exponent_is_fitted_and_clamped():
    from longconv_edu.lab.bench import _growth
    assert _growth(32, 1.0, 128, 16.0) == pytest.approx(2.0)
    assert _growth(32, 1.0, 128, 4.0) == pytest.approx(1.0)
    assert _growth(32, 1.0, 128, 8.0) == pytest.approx(1.5)
    assert _growth(32, 1.0, 128, 0.5) == 1.0 and _growth(32, 1.0, 128, 1e6) == 2.0
    assert _growth(128, 1.0, 128, 1.0) == 2.0


# ----------------------------------------------------------------------------- the committed table
COMMITTED = ROOT / "course" / "results" / "bench" / "bench.json"
PEER_NAMES = {"torch.fft": "torch.fft", "scipy.fft": "scipy.fft", "fftw": "FFTW", "ducc0": "ducc0"}


def _doc_rows(path: Path, header: str) -> dict:
    """The rows of the Markdown table under the header line starting with ``header``, by L."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        label = cells[0]
        rows[int(label[:-1]) * 1024 if label.endswith("K") else int(label)] = cells[1:]
    return rows


def _agrees(shown: str, value: float) -> bool:
    """A number as printed agrees with the JSON's value to the digits it shows."""
    decimals = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value) <= 0.5 * 10 ** -decimals + 1e-9


def _expected(r: dict, roof: float, peers: list, times: bool) -> list:
    per_peer = [r["peer_seconds"][p] * 1e3 if times else r["speedup"][p] for p in peers]
    fb = r.get("fwd_bwd_speedup_vs_fft")
    cols = [r["seconds"] * 1e3, *per_peer, PEER_NAMES[r["best_peer"]], r["speedup_vs_best_peer"],
            "–" if fb is None else fb]
    if times:
        cols.append(r["gflops"])
    return cols + [100 * r["gflops"] / roof, "yes" if r["fits_l2"] else "no"]


@pytest.mark.parametrize("doc, header, times", [
    ("README.md", "| L | fused numba ms | × torch.fft", False),
    ("course/05_cpu_kernel.md", "| L | fused ms | torch.fft ms", True),
])
def test_docs_quote_the_committed_benchmark(doc, header, times):
    """README's and course page 05's benchmark tables are the committed bench.json, number by number."""
    report = json.loads(COMMITTED.read_text())
    assert report["config"]["rows"] == 256 and report["config"]["dtype"] == "float32"
    assert report["command"] in " ".join((ROOT / doc).read_text().replace("\\\n", " ").split())
    rows = _doc_rows(ROOT / doc, header)
    roof = report["roofs"]["matmul_gflops"]
    assert sorted(rows) == [r["L"] for r in report["results"]]
    for r in report["results"]:
        for shown, want in zip(rows[r["L"]], _expected(r, roof, report["peers"], times), strict=True):
            assert shown == want if isinstance(want, str) else _agrees(shown, want), (doc, r["L"], shown, want)
