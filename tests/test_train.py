"""Tests for longconv_edu.lab.models and longconv_edu.lab.train on a tiny configuration (8x8 digits, L=64).

What is checked against what:
* the loss falls (first vs last epoch of a tiny run) and accuracy beats chance;
* a run killed for real (SIGKILL in a subprocess, mid-epoch) and resumed takes exactly the same
  steps as an uninterrupted run: identical per-step losses and identical final weights;
* checkpoints round-trip, and bad ones (corrupted, foreign, other config) raise a clear error
  while the file stays in place;
* the learning-rate schedule against its closed form;
* bad names on the command line list the valid ones.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longconv_edu.__main__ import main
from longconv_edu.lab import checkpoints, experiments, train
from longconv_edu.lab.models import ModelConfig, build_model, count_parameters, long_conv_layers

REPO = Path(__file__).resolve().parents[1]
# 10 epochs of 8 steps, high learning rates: enough to leave the initial plateau on 8x8 digits
TINY = dict(task="digits", size=8, n_train=128, d_model=16, n_layers=1, batch_size=16, epochs=10,
            lr=0.03, kernel_lr=0.03, warmup=0.0, dropout=0.1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Bit-for-bit comparisons between runs need the same float reduction order, so every run in
    this module (in-process and in the killed subprocess, via --threads 1) uses one torch thread,
    whatever thread count earlier tests left behind."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("tiny")
    result = train.fit(train.RunConfig.from_flat(**TINY), out, progress=False, cache_dir=cache, log=lambda s: None)
    return out, result


# --------------------------------------------------------------------------------- models
@pytest.mark.parametrize("model, reg", [("longconv", "none"), ("longconv", "squash+smooth"),
                                        ("ssm", "none"), ("transformer", "none")])
def test_models_forward_backward_and_seeded(model, reg):
    cfg = ModelConfig(d_input=1, n_classes=3, l_max=40, model=model, reg=reg, d_model=8, n_heads=2)
    net = build_model(cfg)
    x = torch.randn(5, 33, 1)                             # L < l_max and not a power of two
    logits = net(x)
    assert logits.shape == (5, 3)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    again = build_model(cfg)                              # the same seed gives the same weights
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert count_parameters(net) > 0
    assert len(long_conv_layers(net)) == (0 if model == "transformer" else cfg.n_layers)


def test_model_length_one_and_bad_input():
    net = build_model(l_max=16, d_model=4, n_classes=2)
    assert net(torch.randn(2, 1, 1)).shape == (2, 2)
    with pytest.raises(ValueError, match="l_max=16"):
        net(torch.randn(2, 17, 1))
    with pytest.raises(ValueError, match=r"x must be \(B, L, C=1\)"):
        net(torch.randn(2, 16))


@pytest.mark.parametrize("kw, exc, names", [
    (dict(model="rnn"), ValueError, ["model", "'longconv'", "'ssm'", "'transformer'"]),
    (dict(reg="l2"), ValueError, ["reg", "'squash'", "'squash+smooth'"]),
    (dict(model="ssm", reg="squash"), ValueError, ["reg", "longconv"]),
    (dict(backend="cuda-magic"), ValueError, ["backend", "'fft'"]),
    (dict(smooth_width=4), ValueError, ["smooth_width", "odd"]),
    (dict(model="transformer", d_model=6, n_heads=4), ValueError, ["d_model", "n_heads"]),
    (dict(dropout=1.0), ValueError, ["dropout"]),
    (dict(d_model=2.5), TypeError, ["d_model"]),
])
def test_model_config_bad_input(kw, exc, names):
    with pytest.raises(exc) as e:
        ModelConfig(**kw)
    for n in names:
        assert n in str(e.value)


# --------------------------------------------------------------------------------- schedule
def test_cosine_with_warmup_matches_closed_form():
    import math

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 2.0}])
    sched = train.cosine_with_warmup(opt, 4, 20)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    want = [2.0 * (s + 1) / 5 if s < 4 else 2.0 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 16))
            for s in range(20)]
    assert seen == pytest.approx(want, rel=1e-12)
    assert max(seen) == pytest.approx(2.0)


# --------------------------------------------------------------------------------- training
def test_tiny_run_loss_falls(tiny_run):
    out, result = tiny_run
    h = result["history"]
    assert result["finished"] and result["epochs_done"] == 10 and len(h["step_loss"]) == 10 * 8
    assert h["train_loss"][-1] < 0.85 * h["train_loss"][0]
    # chance is 0.1 (10 classes); 180 validation digits put its 3-sigma band below 0.17
    assert max(h["val_acc"]) > 0.18
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["history"]["step_loss"] == h["step_loss"]
    assert saved["kernel_metrics"]["total_variation"] > 0
    kernels = torch.load(out / "kernels.pt", weights_only=True)
    assert kernels["layer0"].shape == (16, 64)            # (channels * H, L)


def test_kill_and_resume_equals_uninterrupted(tiny_run, tmp_path, cache):
    ref_out, ref = tiny_run
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "longconv_edu", "train", "--out", str(out), "--cache-dir",
            str(cache), "--no-progress", "--threads", "1"]
    for k, v in TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LONGCONV_EDU_KILL_AT_STEP": "13"}  # mid epoch 2
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ckpt = checkpoints.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 8       # the last completed epoch survived
    resumed = train.fit(train.RunConfig.from_flat(**TINY), out, resume=True, progress=False,
                        cache_dir=cache, log=lambda s: None)
    assert resumed["history"]["step_loss"] == ref["history"]["step_loss"]
    assert resumed["history"]["val_acc"] == ref["history"]["val_acc"]
    a = checkpoints.load_checkpoint(out / "checkpoint.pt")["model"]
    b = checkpoints.load_checkpoint(ref_out / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resuming a finished run does nothing more
    again = train.fit(train.RunConfig.from_flat(**TINY), out, resume=True, progress=False, cache_dir=cache,
                      log=lambda s: None)
    assert again["history"]["step_loss"] == ref["history"]["step_loss"]


def test_checkpoint_round_trip(tmp_path):
    cfg = train.RunConfig.from_flat(**TINY)
    state = {"config": cfg.as_dict(), "model": {"w": torch.randn(3, 4)}, "optimizer": {"x": 1},
             "scheduler": {"last_epoch": 5}, "epoch": 2, "step": 8,
             "rng": [{"torch": torch.get_rng_state()}], "history": {"val_acc": [0.5, 0.6]},
             "world_size": 1}
    path = tmp_path / "c.pt"
    checkpoints.save_checkpoint(path, state)
    back = checkpoints.load_checkpoint(path, cfg.as_dict(), world_size=1)
    assert torch.equal(back["model"]["w"], state["model"]["w"])
    assert torch.equal(back["rng"][0]["torch"], state["rng"][0]["torch"])
    assert back["history"] == state["history"] and back["step"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]          # no temporary file left


def test_bad_checkpoints_raise_and_stay_in_place(tiny_run, tmp_path):
    ref_out, _ = tiny_run
    good = (ref_out / "checkpoint.pt").read_bytes()
    # corrupted: truncated halfway
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(checkpoints.CheckpointError, match="could not be read") as e:
        checkpoints.load_checkpoint(bad)
    assert str(bad) in str(e.value) and "left in place" in str(e.value)
    assert bad.read_bytes() == good[: len(good) // 2]
    # a torch file that is not a training checkpoint
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(checkpoints.CheckpointError, match="not a longconv_edu.lab.train/2 checkpoint"):
        checkpoints.load_checkpoint(bad)
    # another run's checkpoint: the differing options are named
    bad.write_bytes(good)
    other = train.RunConfig.from_flat(**{**TINY, "reg": "squash", "seed": 4})
    with pytest.raises(checkpoints.CheckpointError) as e:
        train.fit(other, tmp_path, resume=True, progress=False, log=lambda s: None)
    assert "reg='none' there, 'squash' here" in str(e.value) and "seed=0 there, 4 here" in str(e.value)
    assert bad.read_bytes() == good
    with pytest.raises(checkpoints.CheckpointError, match="1 process.*this run has 2"):
        checkpoints.load_checkpoint(bad, world_size=2)
    # an existing run is never overwritten without --resume
    with pytest.raises(FileExistsError, match="--resume"):
        train.fit(train.RunConfig.from_flat(**TINY), tmp_path, progress=False, log=lambda s: None)
    assert bad.read_bytes() == good


@pytest.mark.parametrize("kw, exc, names", [
    (dict(task="imagenet"), ValueError, ["task", "'digits'", "'noisy-digits'"]),
    (dict(reg="dropout"), ValueError, ["reg", "'none'", "'squash'", "'smooth'"]),
    (dict(epochs=0), ValueError, ["epochs", ">= 1"]),
    (dict(warmup=1.0), ValueError, ["warmup"]),
    (dict(lr=-1.0), ValueError, ["lr"]),
    (dict(backend="nope"), ValueError, ["backend", "'fft'"]),
    (dict(permute="yes"), TypeError, ["permute"]),
    (dict(permute=True, task="noisy-digits"), ValueError, ["permute", "'digits' only"]),
    (dict(d_modle=8), TypeError, ["unknown run setting", "d_modle", "d_model"]),
])
def test_run_config_bad_input(kw, exc, names):
    with pytest.raises(exc) as e:
        train.RunConfig.from_flat(**kw)
    for n in names:
        assert n in str(e.value)


def test_run_config_nests_one_model_config():
    # one default per setting: the run's model settings are a ModelConfig, with its defaults
    assert train.RunConfig().net == ModelConfig()
    cfg = train.RunConfig.from_flat(**TINY, reg="squash", kernel_dropout=0.2)
    assert cfg.net.reg == "squash" and cfg.net.kernel_dropout == 0.2 and cfg.epochs == TINY["epochs"]
    assert train.RunConfig.from_flat(**cfg.flat()) == cfg
    assert cfg.label == "longconv/squash+kdrop0.2"
    built = cfg.model_config(1, 10, 64)
    assert (built.seed, built.l_max, built.reg) == (cfg.seed, 64, "squash")
    with pytest.raises(TypeError, match="net must be a models.ModelConfig, got dict"):
        train.RunConfig(net={"reg": "squash"})


def test_corrupted_tensor_fails_the_digest(tmp_path):
    # 4 bytes flipped inside a stored tensor still unpickle with weights_only=True; the digest
    # stored with the checkpoint is what catches it
    w = torch.arange(1000, dtype=torch.float32) + 0.5
    state = {"config": train.RunConfig().as_dict(), "model": {"w": w}, "optimizer": {},
             "scheduler": {}, "epoch": 1, "step": 1, "rng": [], "history": {}, "world_size": 1}
    path = tmp_path / "checkpoint.pt"
    checkpoints.save_checkpoint(path, state)
    raw = bytearray(path.read_bytes())
    at = raw.find(w[500:504].numpy().tobytes())
    assert at > 0
    raw[at:at + 4] = bytes(b ^ 0xFF for b in raw[at:at + 4])
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)["model"]["w"][500] != w[500]   # it does load...
    with pytest.raises(checkpoints.CheckpointError, match="fails its digest") as e:
        checkpoints.load_checkpoint(path)                                     # ...but is refused
    assert str(path) in str(e.value) and "left in place" in str(e.value)


def test_unwritable_out_is_refused_before_any_training(tmp_path, monkeypatch):
    """Issue 15 #7: an unwritable --out failed with a traceback after epoch 1 had trained. Now it
    is refused before any data is loaded (load_data must never be reached)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    work = []
    monkeypatch.setattr(train, "load_data", lambda *a, **kw: work.append("data") or 1 / 0)
    monkeypatch.setattr(train, "build_model", lambda *a, **kw: work.append("model") or 1 / 0)
    with pytest.raises(ValueError, match="out_dir .* is not a writable folder"):
        train.fit(train.RunConfig.from_flat(**TINY), blocker / "run", progress=False)
    assert main(["train", "--out", str(blocker / "run"), "--epochs", "1"]) == 2
    assert work == []


def test_kernel_report_of_a_diverged_kernel_is_nan_not_smooth():
    """Issue 15 #3, through the training report: one NaN tap makes its layer's metrics NaN (they
    were 0.0, "perfectly smooth"); the other layer's stay finite and match smoothness_metrics."""
    from longconv_edu.regularize import smoothness_metrics

    model = build_model(l_max=32, d_model=4, n_layers=2, reg="none")
    layers = long_conv_layers(model)
    with torch.no_grad():
        layers[0].raw_kernel[0, 1, 5] = float("nan")
    report, kernels = train.kernel_report(model)
    bad, good = report["per_layer"]
    assert all(bad[m] != bad[m] for m in ("total_variation", "high_freq_fraction", "spectral_decay"))
    rows = [smoothness_metrics(row) for row in layers[1].kernel().detach().reshape(-1, 32)]
    assert good["total_variation"] == pytest.approx(sum(r["total_variation"] for r in rows) / len(rows), rel=1e-12)
    assert report["total_variation"] != report["total_variation"]         # the model's summary too


def test_help_prints_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: None" not in out
    from longconv_edu.layers import DEFAULT_LAM
    assert f"(used when --reg has squash) (default: {DEFAULT_LAM})" in out
    assert "channels H (default: 32)" in out and "epochs (default: 10)" in out


def test_cli_bad_names_list_the_valid_ones(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--reg", "ridge", "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--reg" in err and "'squash+smooth'" in err and "'none'" in err
    with pytest.raises(SystemExit):
        main(["train", "--task", "cifar", "--out", str(tmp_path)])
    assert "'digits'" in capsys.readouterr().err
    # a value argparse accepts but the configuration refuses: a clear message, exit code 2
    assert main(["train", "--out", str(tmp_path), "--epochs", "0"]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--backend", "warp"]) == 2
    assert "'fft'" in capsys.readouterr().err


def test_experiment_sweep_and_summary(monkeypatch, tmp_path, cache):
    tiny = experiments.Experiment("tiny", {**TINY, "epochs": 1, "n_train": 32, "d_model": 8},
                            (("longconv", "none"), ("longconv", "squash"), ("transformer", "none")),
                            seeds=(0, 1))
    monkeypatch.setitem(experiments.EXPERIMENTS, "tiny", tiny)
    summary = experiments.run_experiment("tiny", tmp_path / "results", runs_dir=tmp_path / "runs",
                                   cache_dir=cache, progress=False, log=lambda s: None)
    rows = {r["label"]: r for r in summary["rows"]}
    assert list(rows) == ["longconv/none", "longconv/squash", "transformer"]
    for r in rows.values():
        accs = [x / 100 for x in r["test_acc_per_seed"]]
        assert r["test_acc_mean"] == pytest.approx(100 * sum(accs) / 2, abs=0.01)
    assert rows["transformer"]["kernel_metrics"] == {}
    assert rows["longconv/squash"]["kernel_metrics"]["zero_fraction"] > 0
    res = tmp_path / "results"
    assert {p.name for p in res.iterdir()} >= {"tiny.json", "tiny.md", "tiny-kernels.npz",
                                              "tiny-curves.png", "tiny-kernels.png"}
    assert "longconv/squash" in (res / "tiny.md").read_text()
    # a second call finds every run finished and only re-summarises
    again = experiments.run_experiment("tiny", res, runs_dir=tmp_path / "runs", cache_dir=cache,
                                 progress=False, log=lambda s: None)
    assert again["rows"] == summary["rows"]


def test_lr_schedule_exercise(capsys):
    import math

    from longconv_edu.course.exercises import check

    def learner(step, warmup_steps, total_steps):       # written from the formula, independently
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps)))

    assert check("lr_schedule", learner)
    assert not check("lr_schedule", lambda s, w, t: 1.0 if s >= w else s / w)
    assert "is wrong" in capsys.readouterr().out


@pytest.mark.slow                    # trains four arms of rung 8's study (12-25 s)
def test_learned_butterfly_study_runs_from_the_train_command(tmp_path, cache):
    # rung 8's study is an EXPERIMENTS entry like the tables: one seed, one epoch, all three arms
    out, runs = tmp_path / "learned", tmp_path / "runs"
    assert main(["train", "--experiment", "learned-butterfly", "--out", str(out), "--runs-dir",
                 str(runs), "--cache-dir", str(cache), "--seeds", "0", "--epochs", "1",
                 "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["summary"]) == {"fixed", "learned", "fixed-wide"}
    assert res["command"].startswith("python -m longconv_edu train --experiment learned-butterfly")
    assert (out / "blocks_median.png").exists()
    # the learned arm starts at the DFT and moved; the fixed arm has no blocks to move
    learned = next(r for r in res["runs"] if r["arm"] == "learned")
    assert 0 < min(d["mean"] for d in learned["drift"].values())
    assert main(["train", "--experiment", "learned-butterfly", "--out", str(out), "--jobs", "2",
                 "--seeds", "0", "--epochs", "1"]) == 2


def test_experiment_options_are_checked_before_training(tmp_path, capsys):
    assert main(["train", "--experiment", "digits-reg", "--out", str(tmp_path), "--reg", "squash"]) == 2
    assert "--experiment fixes --reg" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path), "--seeds", "1", "2"]) == 2
    assert "apply with --experiment only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        experiments.run_experiment("digits-reg", tmp_path, seeds=())


@pytest.mark.parametrize("model", ["longconv", "ssm", "transformer"])
def test_classifier_takes_float64_inputs_and_runs_in_float64(model):
    cfg = ModelConfig(d_input=1, n_classes=3, l_max=24, model=model, d_model=8, backend="fft")
    net = build_model(cfg).eval()
    x = torch.randn(2, 24, 1, dtype=torch.float64)
    # float64 data into the float32 model: the same logits as the float32 data
    torch.testing.assert_close(net(x), net(x.float()), rtol=0, atol=0)
    # the whole model in float64 agrees with float32 to float32 rounding, and is float64
    y64 = build_model(cfg).double().eval()(x)
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), net(x.float()), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="x must hold floats .* got torch.int64"):
        net(torch.ones(2, 24, 1, dtype=torch.int64))


def test_paired_summary_differences_per_seed():
    # hand-made metrics of two rows x three seeds; the oracle is arithmetic written out here
    exp = experiments.Experiment("paired", {}, (("longconv", "none"), ("longconv", "smooth")),
                                 labels=("base", "arm"), baseline=0, far_from=2)

    def met(seed, best, last, train):
        return {"config": {"seed": seed}, "label": "x", "seq_len": 4, "test_acc_at_best_val": best,
                "final_test_acc": last, "history": {"train_acc": [0.1, train]}, "best_epoch": 2}

    base = [met(0, 0.80, 0.70, 1.0), met(1, 0.90, 0.80, 1.0), met(2, 0.85, 0.75, 0.9)]
    arm = [met(0, 0.82, 0.60, 0.5), met(1, 0.93, 0.70, 0.6), met(2, 0.86, 0.65, 0.7)]
    k = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])      # far share: 0 and 1
    kernels = [[{"layer0": k}] * 3, [{"layer0": k[:1]}] * 3]
    out = experiments.paired_summary(exp, [base, arm], kernels=kernels)
    d = out["paired"][0]
    assert (d["label"], d["minus"]) == ("arm", "base")
    assert d["test_at_best_val"]["per_seed"] == pytest.approx([2.0, 3.0, 1.0])
    assert d["test_at_best_val"]["mean"] == pytest.approx(2.0)
    assert d["test_at_best_val"]["sd"] == pytest.approx(1.0)           # sample sd of 2, 3, 1
    assert d["test_at_best_val"]["beyond_2sd"] is False                # 2.0 is not > 2 * 1.0
    assert d["test_at_last"]["per_seed"] == pytest.approx([-10.0, -10.0, -10.0])
    assert d["test_at_last"]["sd"] == pytest.approx(0.0) and d["test_at_last"]["beyond_2sd"]
    assert out["rows"][1]["train_at_last"]["mean"] == pytest.approx(60.0)
    assert out["rows"][0]["far_tap_energy"]["mean"] == pytest.approx(50.0)
    assert out["rows"][1]["far_tap_energy"]["mean"] == pytest.approx(0.0)
    assert "band_energy" not in out["rows"][0]                         # no bands asked for
    banded = experiments.Experiment("paired", {}, exp.runs, labels=exp.labels, baseline=0, bands=(1, -1))
    out = experiments.paired_summary(banded, [base, arm], kernels=kernels)
    # row 0's kernel rows: [3, 4, 0, 0] (energy 9 + 16 in taps 0..1) and [0, 0, 1, 1]: bands 0, 1-2, 3
    shares = [(b["taps"], b["mean"]) for b in out["rows"][0]["band_energy"]]
    assert shares == [([0, 1], pytest.approx(100 * (9 / 25 + 0) / 2)),
                      ([1, 3], pytest.approx(100 * (16 / 25 + 1 / 2) / 2)),
                      ([3, 4], pytest.approx(100 * (0 + 1 / 2) / 2))]
    assert experiments.tap_bands((256, -256), 1024) == [(0, 256), (256, 768), (768, 1024)]
    assert experiments.tap_bands((256, -256), 256) == [(0, 256)]      # nothing to cut
    with pytest.raises(ValueError, match="same seeds"):
        experiments.paired_summary(exp, [base, arm[::-1]], kernels=kernels)


def test_gap_by_length_reads_each_lengths_paired_difference():
    # two hand-made paired summaries at L = 4 and L = 2; the table must sort them by length and
    # print the arm's paired difference per seed (oracle: the numbers written out here)
    exp = experiments.Experiment("paired", {}, (("longconv", "none"), ("longconv", "smooth")),
                                 labels=("base", "arm"), baseline=0)

    def met(seed, best, train, L):
        return {"config": {"seed": seed}, "label": "x", "seq_len": L, "test_acc_at_best_val": best,
                "final_test_acc": best, "history": {"train_acc": [train]}, "best_epoch": 1}

    def summary(L, base, arm):
        runs = [[met(s, b, 1.0, L) for s, b in enumerate(base)], [met(s, a, 0.5, L) for s, a in enumerate(arm)]]
        return {"experiment": f"e{L}", "rows": [{"seq_len": L}, {"seq_len": L}],
                "paired_summary": experiments.paired_summary(exp, runs)}

    table = experiments.gap_by_length([summary(4, [0.5, 0.6, 0.7], [0.6, 0.8, 0.9]),
                                       summary(2, [0.5, 0.5, 0.5], [0.5, 0.5, 0.6])])
    lines = [ln for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [ln.split("|")[1].strip() for ln in lines] == ["2", "4"]
    assert "+3.3 ± 5.8 [+0.0, +0.0, +10.0]" in lines[0]
    assert "+16.7 ± 5.8 * [+10.0, +20.0, +20.0]" in lines[1]           # 16.7 > 2 * 5.8
    assert "| 60.0 ± 10.0 | 100.0 ± 0.0 | 76.7 ± 15.3 | 50.0 ± 0.0 |" in lines[1]
    with pytest.raises(ValueError, match=r"row must name a non-baseline arm, 1 <= row < 2, got 2"):
        experiments.gap_by_length([summary(2, [0.5] * 3, [0.5] * 3)], row=2)
    with pytest.raises(TypeError, match="summaries must be a non-empty sequence of paired"):
        experiments.gap_by_length([])


def test_restore_model_gives_the_runs_last_weights(tiny_run, cache):
    """The restored model scores the run's last recorded test accuracy (its metrics are the oracle)."""
    out, result = tiny_run
    model, data, cfg = train.restore_model(out, cache)
    assert cfg == train.RunConfig.from_flat(**TINY) and not model.training
    assert train.evaluate(model, data["test"])["acc"] == pytest.approx(result["final_test_acc"])
    with pytest.raises(ValueError, match="run_dir must be a run folder holding checkpoint.pt, got .*nowhere"):
        train.restore_model(out / "nowhere", cache)


def test_tap_ablation_zeroes_one_band_at_a_time_and_restores_the_model():
    """Oracle: the same model with the band zeroed by hand (a copy), evaluated directly."""
    import copy

    from longconv_edu.lab.data import SequenceDataset
    from longconv_edu.lab.models import build_model, long_conv_layers

    g = torch.Generator().manual_seed(0)
    ds = SequenceDataset(torch.randn(40, 16, 1, generator=g), torch.randint(0, 3, (40,), generator=g), 3)
    model = build_model(l_max=16, d_model=4, n_layers=2, n_classes=3, seed=0, reg="squash", lam=0.01).eval()
    with torch.no_grad():
        for layer in long_conv_layers(model):
            layer.raw_kernel.mul_(50.0)                      # taps well above lam: a real kernel
    before = [p.detach().clone() for p in model.parameters()]
    out = experiments.tap_ablation(model, ds, [(4, 12), (12, 16)])
    assert list(out) == ["all taps", "taps 4-11 zeroed", "taps 12-15 zeroed"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # restored
    for (a, b), key in [((4, 12), "taps 4-11 zeroed"), ((12, 16), "taps 12-15 zeroed")]:
        ref = copy.deepcopy(model)
        with torch.no_grad():
            for layer in long_conv_layers(ref):
                layer.raw_kernel[..., a:b] = 0.0
        assert out[key] == pytest.approx(train.evaluate(ref, ds)["acc"])
    assert out["all taps"] == pytest.approx(train.evaluate(model, ds)["acc"])
    smooth = build_model(l_max=16, d_model=4, n_layers=1, n_classes=3, reg="smooth", smooth_width=3)
    with pytest.raises(ValueError, match="tap_ablation needs free, causal kernels without Smooth"):
        experiments.tap_ablation(smooth, ds, [(4, 16)])
    with pytest.raises(ValueError, match=r"bands must hold tap ranges \[a, b\) with 0 <= a < b <= L = 16, got \[4, 17\)"):
        experiments.tap_ablation(model, ds, [(4, 17)])
    with pytest.raises(ValueError, match="model has no LongConv layers"):
        experiments.tap_ablation(build_model(l_max=16, d_model=4, n_classes=3, model="transformer"), ds, [(4, 16)])


def test_rows_with_the_same_label_get_their_own_run_folders(tmp_path):
    # a learning-rate sweep of one model: three rows, one label; they must not share a folder
    sweep = experiments.Experiment("sweep", {**TINY}, tuple(("transformer", "none", {"lr": lr})
                                                           for lr in (1e-3, 1e-2, 1e-1)), seeds=(0, 1))
    dirs = [d for row in sweep.run_dirs(tmp_path) for d in row]
    assert len(set(dirs)) == 6
    assert dirs[0].name == "transformer-seed0" and dirs[2].name == "transformer-row1-seed0"
    # rows with distinct labels keep the plain LABEL-seedS names the committed runs use
    plain = experiments.EXPERIMENTS["noisy-reg-1024"].run_dirs(tmp_path)
    assert [row[0].name for row in plain] == ["longconv-none-seed0", "longconv-squash_kdrop0.2-seed0",
                                              "longconv-smooth-seed0", "longconv-squash_smooth-seed0",
                                              "ssm-seed0"]
