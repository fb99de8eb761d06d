"""Rung 8 experiment: fixed vs learned butterfly on sequential digits, a few seeds.

Both arms are the very same rung-7 classifier (``models.build_model``, a stack of ``LongConv``
layers) computing every convolution in the Monarch matmul form:

* ``"fixed"``    backend "butterfly" -- the DFT blocks are constants (FlashButterfly);
* ``"learned"``  the same layers with ``add_learned_butterfly``: every layer gets a
                 ``LearnedButterflyConv`` whose per-channel blocks start at the exact DFT and are
                 trained with their own learning rate (AdamW group from ``layers.param_groups``).

At initialisation (same seed) both arms compute the same function, so any difference at the
end comes from training the blocks. ``run_arm`` trains one (arm, seed) and returns its metrics:
test/validation accuracy, parameter count, seconds per epoch, and the drift of every learned
block from the DFT (relative Frobenius norm, mean and max over channels and layers);
``run_study`` runs every (arm, seed), writes ``results.json`` and the pictures.

    python -m longconv_edu.learned_study --out course/results/learned --seeds 0 1 2 --epochs 30

Data, model and parameter groups come from the library (``data.sequential_digits``,
``models.build_model``, ``layers.param_groups``); the loop below is a plain AdamW loop with a
cosine learning-rate schedule, kept here so the experiment can time each epoch itself.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch
from torch import nn

from ._checks import check_choice, check_float, check_int
from .learned import LearnedButterflyConv, dft_blocks

__all__ = ["ARMS", "add_learned_butterfly", "run_arm", "run_study", "summarize", "main"]

ARMS = ("fixed", "learned")


def add_learned_butterfly(model: nn.Module, *, inverse: str = "tied", block_lr: float = 1e-3,
                          init_noise: float = 0.0, seed: int = 0) -> list[LearnedButterflyConv]:
    """Give every ``LongConv`` of ``model`` a learned butterfly (as ``learned_butterfly=True`` would).

    Each layer gets a ``LearnedButterflyConv`` over its channels * H rows, FFT size and factors
    as the layer's fixed butterfly would use, in the layer's dtype. Returns the new modules.
    """
    from .layers import LongConv

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    added = []
    for i, layer in enumerate(m for m in model.modules() if isinstance(m, LongConv)):
        lb = LearnedButterflyConv(layer.channels * layer.d_model, layer.l_max, inverse=inverse,
                                  block_lr=block_lr, init_noise=init_noise, seed=seed + i,
                                  dtype=layer.D.dtype)
        layer.butterfly = lb.to(layer.D.device)
        added.append(lb)
    if not added:
        raise ValueError("model has no LongConv layer to give a learned butterfly")
    return added


def _accuracy(model, x, y, batch_size) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def run_arm(arm: str, seed: int, *, epochs: int = 30, size: int = 8, d_model: int = 32,
            n_layers: int = 2, batch_size: int = 64, lr: float = 1e-2, weight_decay: float = 0.05,
            kernel_lr: float = 1e-3, block_lr: float = 1e-3, inverse: str = "tied",
            progress: bool = True, keep_blocks: bool = False) -> dict:
    """Train one arm ("fixed" or "learned") with one model seed; return its metrics as a dict.

    Data: ``sequential_digits(size=size)`` (L = size**2; its fixed split, seed 0). Model:
    ``build_model(model="longconv", reg="none", backend="butterfly", d_model, n_layers)``, seeded
    with ``torch.manual_seed(seed)`` (the data order too). keep_blocks: also return, for the
    learned arm, layer 0 channel 0's blocks (complex, as nested [re, im] lists) for pictures.
    """
    from tqdm.auto import tqdm

    from .data import sequential_digits
    from .layers import param_groups, tag_params
    from .models import build_model, count_parameters, long_conv_layers

    check_choice(arm, "arm", ARMS)
    seed = check_int(seed, "seed", min=0)
    epochs = check_int(epochs, "epochs", min=1)
    batch_size = check_int(batch_size, "batch_size", min=1)
    lr = check_float(lr, "lr", min=0.0, min_inclusive=False)
    train, val, test = (sequential_digits(s, size=size) for s in ("train", "val", "test"))
    L = train.seq_len
    torch.manual_seed(seed)
    model = build_model(d_input=1, n_classes=10, l_max=L, model="longconv", reg="none",
                        d_model=d_model, n_layers=n_layers, dropout=0.1, backend="butterfly")
    for layer in long_conv_layers(model):             # the kernels' own lr (paper: 1e-4..1e-3), wd 0
        tag_params(layer, ["raw_kernel"], lr=kernel_lr, weight_decay=0.0)
    learned = add_learned_butterfly(model, inverse=inverse, block_lr=block_lr) if arm == "learned" else []
    groups = param_groups(model, lr, weight_decay)
    opt = torch.optim.AdamW(groups)                 # sets each group's "initial_lr" with the scheduler
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    epoch_s, history = [], []
    bar = tqdm(total=steps, desc=f"{arm} seed {seed}", disable=not progress, leave=False)
    for epoch in range(epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train), generator=gen)
        total, n = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(model(train.x[idx]), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
            bar.update(1)
        epoch_s.append(time.perf_counter() - t0)
        history.append({"epoch": epoch + 1, "train_loss": total / n,
                        "val_acc": _accuracy(model, val.x, val.y, 256)})
        bar.set_postfix(loss=f"{total / n:.3f}", val=f"{history[-1]['val_acc']:.3f}")
    bar.close()
    out = {"arm": arm, "seed": seed, "params": count_parameters(model),
           "block_params": sum(p.numel() for m in learned for p in m.parameters()),
           "test_acc": _accuracy(model, test.x, test.y, 256), "val_acc": history[-1]["val_acc"],
           "sec_per_epoch": sum(epoch_s[1:] or epoch_s) / len(epoch_s[1:] or epoch_s),
           "epoch_seconds": epoch_s, "history": history,
           "groups": [{"name": g["name"], "lr": g["initial_lr"], "weight_decay": g["weight_decay"],
                       "n_params": sum(p.numel() for p in g["params"])} for g in groups]}
    if learned:
        drift = {}
        for li, m in enumerate(learned):
            for name, d in m.drift().items():
                drift[f"layer{li} {name}"] = {"mean": float(d.mean()), "max": float(d.max())}
        out["drift"] = drift
        out["factors"] = list(learned[0].factors)
        if keep_blocks:
            out["blocks_layer0_ch0"] = [torch.view_as_real(b[0].detach()).tolist()
                                        for b in learned[0].blocks()]
    return out


def summarize(runs: list[dict]) -> dict:
    """Per arm: mean and (sample) std of test/val accuracy over seeds, params, seconds/epoch."""
    out = {}
    for arm in ARMS:
        rs = [r for r in runs if r["arm"] == arm]
        if not rs:
            continue
        row = {"seeds": [r["seed"] for r in rs], "params": rs[0]["params"],
               "block_params": rs[0]["block_params"]}
        for key in ("test_acc", "val_acc", "sec_per_epoch"):
            v = torch.tensor([r[key] for r in rs], dtype=torch.float64)
            row[key] = {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0,
                        "values": [float(x) for x in v]}
        if arm == "learned":
            names = list(rs[0]["drift"])
            row["drift"] = {n: {"mean": sum(r["drift"][n]["mean"] for r in rs) / len(rs),
                                "max": max(r["drift"][n]["max"] for r in rs)} for n in names}
        out[arm] = row
    return out


def run_study(out_dir, *, seeds=(0, 1, 2), progress: bool = True, **kwargs) -> dict:
    """Run both arms for every seed, write ``results.json`` and ``blocks.png`` under out_dir."""
    from .viz import plot_learned_blocks

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        for arm in ARMS:
            runs.append(run_arm(arm, seed, progress=progress, keep_blocks=(arm == "learned"), **kwargs))
            print(f"{arm:8s} seed {seed}: test acc {runs[-1]['test_acc']:.4f}, "
                  f"{runs[-1]['sec_per_epoch']:.2f} s/epoch", flush=True)
    import subprocess
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    import inspect
    defaults = {k: v.default for k, v in inspect.signature(run_arm).parameters.items()
                if v.default is not inspect.Parameter.empty and k not in ("progress", "keep_blocks")}
    result = {"settings": {"seeds": list(seeds), **defaults, **kwargs, "git_commit": commit},
              "summary": summarize(runs), "runs": runs,
              "machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "platform": platform.platform()},
              "started": started, "wall_seconds": time.perf_counter() - t0}
    blocks = next(r for r in runs if r["arm"] == "learned").pop("blocks_layer0_ch0")
    for r in runs:
        r.pop("blocks_layer0_ch0", None)
    learned = [torch.view_as_complex(torch.tensor(b, dtype=torch.float32)) for b in blocks]
    factors = tuple(b.shape[-1] for b in learned)
    fig = plot_learned_blocks(learned, dft_blocks(factors),
                              title=f"layer 0, channel 0 after training (seed {seeds[0]})")
    fig.savefig(out_dir / "blocks.png", dpi=80)
    result["blocks_layer0_ch0_seed%d" % seeds[0]] = blocks
    (out_dir / "results.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m longconv_edu.learned_study", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="course/results/learned")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--size", type=int, default=8, help="digit image side; L = size**2")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")                          # files only, no display
    torch.set_num_threads(check_int(a.threads, "threads", min=1))
    res = run_study(a.out, seeds=tuple(a.seeds), progress=not a.no_progress, epochs=a.epochs,
                    size=a.size, d_model=a.d_model, n_layers=a.n_layers)
    print(json.dumps(res["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
