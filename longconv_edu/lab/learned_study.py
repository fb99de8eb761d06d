"""Rung 8 experiment: fixed vs learned butterfly on sequential digits, a few seeds.

Both arms are the rung-7 training harness (``train.fit``: the classifier of ``models``, AdamW with
``params.param_groups``, cosine schedule with warm-up, metrics JSON and checkpoints) with the
convolutions in the Monarch matmul form (backend "butterfly"):

* ``"fixed"``    the DFT blocks are constants (FlashButterfly);
* ``"learned"``  ``RunConfig(learned_butterfly=True)``: every ``LongConv`` gets a
                 ``LearnedButterflyConv`` whose per-channel blocks start at the exact DFT and train
                 with their own learning rate (0.001, weight decay 0);
* ``"fixed-wide"`` a capacity control: fixed blocks, d_model 94 instead of 32, which gives the
                 model about as many parameters as the learned arm (49,642 vs 49,930), so a gap
                 between "learned" and "fixed" can be told apart from a gap due to size alone.

With the same seed both arms start from the same weights and compute the same function (the
blocks start at the DFT), so differences at the end come from training the blocks. ``run_arm``
trains one (arm, seed) through ``fit`` and adds what the harness does not know about: the drift
of every learned block from the DFT (relative Frobenius norm per channel, ``learned.block_drift``),
read back from the run's final checkpoint. ``run_study`` runs every (arm, seed), writes
``results.json`` and the block pictures.

    python -m longconv_edu.lab.learned_study --out course/results/learned --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from .._checks import check_choice, check_int
from ..learned import LearnedButterflyConv, dft_blocks

__all__ = ["ARMS", "ARM_SETTINGS", "BASE", "run_arm", "run_study", "summarize", "main"]

ARMS = ("fixed", "learned", "fixed-wide")
#: What each arm changes in BASE.
ARM_SETTINGS = {"fixed": {}, "learned": {"learned_butterfly": True}, "fixed-wide": {"d_model": 94}}

#: RunConfig settings shared by both arms (8x8 digits: L = 64, FFT size 128 = 16 x 8).
BASE = dict(task="digits", size=8, epochs=20, batch_size=64, lr=0.01, kernel_lr=1e-3,
            weight_decay=0.05, warmup=0.1, d_model=32, n_layers=2, dropout=0.1,
            kernel_dropout=0.0, backend="butterfly")


def _learned_modules(model) -> list[LearnedButterflyConv]:
    return [m for m in model.modules() if isinstance(m, LearnedButterflyConv)]


def run_arm(arm: str, seed: int, runs_dir, *, progress: bool = True, keep_blocks: bool = False,
            log=None, **overrides) -> dict:
    """Train (or, if finished, read back) one arm with one seed in ``runs_dir/ARM-seedS``.

    overrides: RunConfig fields replacing ``BASE`` (for example epochs=3 for a quick run).
    Returns: arm, seed, params, block_params, final and best-validation test accuracy, seconds per
    epoch (training loop only, mean over epochs), the per-epoch history, the optimiser groups and,
    for the learned arm, drift[layer i forward[j] (n x n)] = per-channel relative Frobenius
    distances (+ mean, max); keep_blocks adds every layer-0 block as [re, im] nested lists.
    """
    from ..params import param_groups
    from .models import build_model
    from .train import CHECKPOINT_NAME, RunConfig, fit, load_checkpoint

    check_choice(arm, "arm", ARMS)
    seed = check_int(seed, "seed", min=0)
    cfg = RunConfig(**{**BASE, **ARM_SETTINGS[arm], **overrides, "seed": seed})
    out = Path(runs_dir) / f"{arm}-seed{seed}"
    m = fit(cfg, out, resume=True, progress=progress, log=log)
    model = build_model(cfg.model_config(1, 10, m["seq_len"]))      # to read the blocks back only
    model.load_state_dict(load_checkpoint(out / CHECKPOINT_NAME, cfg)["model"])
    learned = _learned_modules(model)
    h = m["history"]
    res = {"arm": arm, "seed": seed, "params": m["params"],
           "block_params": sum(p.numel() for lb in learned for p in lb.parameters()),
           "final_test_acc": m["final_test_acc"], "test_acc_at_best_val": m["test_acc_at_best_val"],
           "best_epoch": m["best_epoch"], "sec_per_epoch": m["time_per_epoch"],
           "history": {k: h[k] for k in ("train_loss", "val_acc", "test_acc", "epoch_time")},
           "groups": [{"name": g["name"], "lr": g["lr"], "weight_decay": g["weight_decay"],
                       "n_params": sum(p.numel() for p in g["params"])}
                      for g in param_groups(model, cfg.lr, cfg.weight_decay)]}
    if learned:
        res["factors"] = list(learned[0].factors)
        res["drift"] = {f"layer{i} {name}": {"mean": float(d.mean()), "max": float(d.max()),
                                             "per_channel": [round(float(x), 5) for x in d]}
                        for i, lb in enumerate(learned) for name, d in lb.drift().items()}
        if keep_blocks:
            res["blocks_layer0"] = [torch.view_as_real(b.detach()).tolist() for b in learned[0].blocks()]
    return res


def summarize(runs: list[dict]) -> dict:
    """Per arm: mean and sample std over seeds of the accuracies and seconds per epoch."""
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        row = {"seeds": [r["seed"] for r in rs], "params": rs[0]["params"],
               "block_params": rs[0]["block_params"]}
        for key in ("final_test_acc", "test_acc_at_best_val", "sec_per_epoch"):
            v = torch.tensor([r[key] for r in rs], dtype=torch.float64)
            row[key] = {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0,
                        "values": [float(x) for x in v]}
        if arm == "learned":
            row["drift"] = {n: {"mean": sum(r["drift"][n]["mean"] for r in rs) / len(rs),
                                "max": max(r["drift"][n]["max"] for r in rs)} for n in rs[0]["drift"]}
        out[arm] = row
    return out


def _block_figure(blocks_layer0, drift_layer0, which: str, title: str):
    """Layer 0's blocks of one channel (the median- or the max-drift one) beside the DFT."""
    from .viz import plot_learned_blocks

    blocks = [torch.view_as_complex(torch.tensor(b, dtype=torch.float32)) for b in blocks_layer0]
    per_channel = torch.tensor(drift_layer0)                         # (H,) drift of block 0
    h = int(per_channel.argmax()) if which == "max" else int(per_channel.argsort()[len(per_channel) // 2])
    factors = tuple(b.shape[-1] for b in blocks)
    return plot_learned_blocks([b[h] for b in blocks], dft_blocks(factors),
                               title=f"{title}, channel {h} ({which} drift)"), h


def run_study(out_dir, *, seeds=(0, 1, 2), arms=ARMS, runs_dir=None, progress: bool = True,
              **overrides) -> dict:
    """Run every arm for every seed; write results.json, blocks_median.png and blocks_max.png.

    Finished runs in ``runs_dir`` are read back, not retrained (``fit(resume=True)``)."""
    from .data import default_cache_dir

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(runs_dir) if runs_dir else default_cache_dir() / "runs" / "learned-butterfly"
    started, t0 = time.strftime("%Y-%m-%d %H:%M:%S"), time.perf_counter()
    runs = []
    for seed in seeds:
        for arm in arms:
            r = run_arm(arm, seed, runs_dir, progress=progress,
                        keep_blocks=(arm == "learned" and seed == seeds[0]), log=print, **overrides)
            runs.append(r)
            print(f"{arm:8s} seed {seed}: final test acc {r['final_test_acc']:.4f}, "
                  f"{r['sec_per_epoch']:.2f} s/epoch", flush=True)
    first = next(r for r in runs if r["arm"] == "learned" and r["seed"] == seeds[0])
    blocks = first.pop("blocks_layer0")
    name0 = next(n for n in first["drift"] if n.startswith("layer0 forward[0]"))
    chosen = {}
    for which in ("median", "max"):
        fig, h = _block_figure(blocks, first["drift"][name0]["per_channel"], which,
                               f"layer 0 after training (seed {seeds[0]})")
        fig.savefig(out_dir / f"blocks_{which}.png", dpi=72)
        chosen[which] = h
    result = {"command": "python -m longconv_edu.lab.learned_study --out " + str(out_dir)
              + " --seeds " + " ".join(map(str, seeds)),
              "settings": {**BASE, **overrides, "seeds": list(seeds), "threads": torch.get_num_threads(),
                           "arms": {a: ARM_SETTINGS[a] for a in arms}},
              "summary": summarize(runs), "runs": runs,
              "pictures": {f"blocks_{w}.png": f"layer 0, channel {h}, seed {seeds[0]}"
                           for w, h in chosen.items()},
              "machine": {"torch": torch.__version__, "platform": platform.platform(),
                          "note": "2 CPU cores shared with other jobs: seconds are rough"},
              "started": started, "wall_seconds": round(time.perf_counter() - t0, 1)}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m longconv_edu.lab.learned_study",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", default="course/results/learned", help="results folder (JSON, PNG)")
    p.add_argument("--runs-dir", help="where the runs' checkpoints go (default: the data cache)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=BASE["epochs"])
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")                          # files only
    torch.set_num_threads(check_int(a.threads, "--threads", min=1))
    res = run_study(a.out, seeds=tuple(a.seeds), runs_dir=a.runs_dir, progress=not a.no_progress,
                    epochs=a.epochs)
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
