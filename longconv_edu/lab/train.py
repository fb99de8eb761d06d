"""Rung 7 training loop: one run of a long-convolution classifier, on CPU or across processes.

One run (``fit``):

* data from ``data.load_task``, model from ``models.build_model`` (``RunConfig.net`` is its
  ``ModelConfig``; the data fill in input width, classes, length and input statistics);
* AdamW with the layers' own parameter groups (``params.param_groups``: kernel parameters get the
  kernel learning rate and zero weight decay, as in the paper), a cosine learning-rate schedule
  after a linear warm-up;
* a tqdm progress bar per epoch, validation and test accuracy after every epoch, a metrics JSON
  (``metrics.json``) rewritten after every epoch, and a checkpoint (``checkpoint.pt``, see
  ``checkpoints``) written atomically after every epoch, so a run killed at any moment loses at
  most the epoch in progress;
* ``resume=True`` continues a killed run exactly where its last checkpoint stopped: model,
  optimiser, schedule, every random state and the epoch/step counters are restored, so the
  resumed run takes the very same steps as one that was never interrupted (the shuffling order of
  epoch e is a function of (seed, e) only).

Distributed: launched by ``torchrun --nproc_per_node=N -m longconv_edu train ...`` the same code
runs DistributedDataParallel (gloo on CPU, nccl on GPU). ``batch_size`` is the *global* batch;
rank r takes the r::N share of every global batch and weights its loss so that the N ranks
together take the 1-process step, whatever the dataset size (``distributed``).

Experiments (every results table) live in ``experiments``; the command line in ``cli``.

Testing hook: if the environment variable ``LONGCONV_EDU_KILL_AT_STEP`` is set to n, the process
kills itself with SIGKILL right after optimiser step n (to test kill-and-resume for real).
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_bool, check_choice, check_float, check_int
from . import distributed as dist_
from .checkpoints import load_checkpoint, param_digest, save_checkpoint
from .data import DIGIT_PLACES, TASKS, atomic_save, load_task, write_json
from .models import ModelConfig, build_model, count_parameters, long_conv_layers

__all__ = ["RunConfig", "fit", "evaluate", "restore_model", "cosine_with_warmup", "lr_factor", "make_optimizer",
           "load_data", "kernel_report", "CHECKPOINT_NAME", "METRICS_NAME",
           "KERNELS_NAME", "MODEL_FIELDS"]

CHECKPOINT_NAME, METRICS_NAME, KERNELS_NAME = "checkpoint.pt", "metrics.json", "kernels.pt"

#: ModelConfig fields the data or the run decide (fit fills them in); the rest are model settings.
DATA_FIELDS = ("d_input", "n_classes", "l_max", "input_mean", "input_std", "seed")
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig) if f.name not in DATA_FIELDS)


@dataclass
class RunConfig:
    """Everything that defines a run (and must match when it is resumed).

    The model's settings are one ``ModelConfig``, ``net`` (its defaults are the only ones);
    ``RunConfig.from_flat(reg="squash", epochs=5, ...)`` routes flat keyword arguments, as the
    command line and the experiment tables give them, to the right level. ``seed`` seeds the
    model's initialisation (``net.seed`` is set from it) and the shuffling.
    """
    task: str = "digits"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32               # global batch (shared out over DDP ranks)
    lr: float = 0.01                   # peak learning rate of the model (kernels: net.kernel_lr)
    weight_decay: float = 0.05
    warmup: float = 0.1                # fraction of all steps spent warming up linearly
    size: int = 32                     # digits: image side, L = size**2
    length: int = 1024                 # noisy-digits: sequence length L
    digit_at: str = "start"            # noisy-digits: the digit first ("start") or last ("end")
    permute: bool = False              # digits only: fixed pixel permutation
    data_seed: int = 0                 # the train/val/test split (and the noise of noisy-digits)
    n_train: int = 0                   # 0: all; else the first n of the train split
    net: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        check_choice(self.task, "task", TASKS)
        check_int(self.seed, "seed", min=0)
        check_int(self.epochs, "epochs", min=1)
        check_int(self.batch_size, "batch_size", min=1)
        check_float(self.lr, "lr", min=0.0, min_inclusive=False)
        check_float(self.weight_decay, "weight_decay", min=0.0)
        check_float(self.warmup, "warmup", min=0.0, max=1.0, max_inclusive=False)
        check_int(self.size, "size", min=8)
        check_int(self.length, "length", min=1)
        check_choice(self.digit_at, "digit_at", DIGIT_PLACES)
        check_int(self.data_seed, "data_seed", min=0)
        check_int(self.n_train, "n_train", min=0)
        check_bool(self.permute, "permute")
        if not isinstance(self.net, ModelConfig):
            raise TypeError(f"net must be a models.ModelConfig, got {type(self.net).__name__}")
        if self.permute and self.task != "digits":
            raise ValueError(f"permute applies to task 'digits' only, got task={self.task!r}")
        if self.digit_at != "start" and self.task != "noisy-digits":
            raise ValueError(f"digit_at applies to task 'noisy-digits' only, got task={self.task!r}")

    @classmethod
    def from_flat(cls, **settings) -> RunConfig:
        """A RunConfig from flat settings: model settings (``MODEL_FIELDS``) go to ``net``."""
        run_fields = {f.name for f in dataclasses.fields(cls)} - {"net"}
        unknown = sorted(set(settings) - run_fields - set(MODEL_FIELDS))
        if unknown:
            raise TypeError(f"unknown run setting(s) {unknown}; valid: "
                            f"{sorted(run_fields | set(MODEL_FIELDS))}")
        net = ModelConfig(**{k: v for k, v in settings.items() if k in MODEL_FIELDS})
        return cls(**{k: v for k, v in settings.items() if k in run_fields}, net=net)

    def flat(self) -> dict:
        """The settings as one flat dict (the inverse of ``from_flat``)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "net"}
        return {**d, **{k: getattr(self.net, k) for k in MODEL_FIELDS}}

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_config(self, d_input: int, n_classes: int, l_max: int, input_mean: float = 0.0,
                     input_std: float = 1.0) -> ModelConfig:
        """``net`` completed by the data (and the run's seed): what ``build_model`` takes."""
        return dataclasses.replace(self.net, d_input=d_input, n_classes=n_classes, l_max=l_max,
                                   input_mean=input_mean, input_std=input_std, seed=self.seed)

    @property
    def label(self) -> str:
        n = self.net
        label = n.model if n.model != "longconv" else f"longconv/{n.reg}"
        if n.model == "longconv" and n.kernel_dropout:
            label += f"+kdrop{n.kernel_dropout:g}"
        return label + ("+learned-butterfly" if n.learned_butterfly else "")   # rung 8


# ---------------------------------------------------------------------------------------------
# data, optimiser, schedule
# ---------------------------------------------------------------------------------------------

def load_data(cfg: RunConfig, cache_dir=None) -> dict:
    """{"train", "val", "test"} SequenceDatasets for the run's task."""
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    if cfg.task == "digits":
        kw = dict(seed=cfg.data_seed, size=cfg.size, permute=cfg.permute, cache_dir=cache_dir)
    else:
        kw = dict(seed=cfg.data_seed, length=cfg.length, digit_at=cfg.digit_at, cache_dir=cache_dir)
    out = {s: load_task(cfg.task, s, **kw) for s in ("train", "val", "test")}
    if cfg.n_train:
        out["train"] = out["train"].subset(min(cfg.n_train, len(out["train"])))
    return out


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The schedule's multiplier at ``step`` (0-based): (step + 1) / (warmup_steps + 1) while
    warming up, then half a cosine from 1 down to 0 at ``total_steps``."""
    step = check_int(step, "step", min=0)
    warmup_steps = check_int(warmup_steps, "warmup_steps", min=0)
    total_steps = check_int(total_steps, "total_steps", min=1)
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    """LambdaLR: lr rises linearly from 0 over ``warmup_steps``, then follows half a cosine to 0
    at ``total_steps`` (``lr_factor``). Each group's own lr (kernel or model) is the peak it is
    scaled by, so the kernel learning rate keeps its ratio to the model's."""
    import functools

    warmup_steps = check_int(warmup_steps, "warmup_steps", min=0)
    total_steps = check_int(total_steps, "total_steps", min=1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(lr_factor, warmup_steps=warmup_steps, total_steps=total_steps))


def make_optimizer(model: torch.nn.Module, cfg: RunConfig):
    """AdamW over the layers' own parameter groups (kernels: their lr, no weight decay)."""
    from ..params import param_groups

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg must be a RunConfig, got {type(cfg).__name__}")

    return torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay))


# ---------------------------------------------------------------------------------------------
# evaluation and kernel report
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, ds, *, batch_size: int = 128, dist_info: dist_.Dist | None = None) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on dataset ``ds`` (sharded over DDP ranks)."""
    batch_size = check_int(batch_size, "batch_size", min=1)
    d = dist_info or dist_.Dist()
    was = model.training
    model.eval()
    idx = torch.arange(d.rank, len(ds), d.world)
    loss_sum = correct = 0.0
    for i in range(0, len(idx), batch_size):
        x, y = ds[idx[i:i + batch_size]]
        logits = model(x.to(d.device))
        y = y.to(d.device)
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(-1) == y).sum())
    model.train(was)
    loss_sum, correct, n = dist_.all_sum([loss_sum, correct, float(len(idx))], d)
    if n == 0:
        raise ValueError("ds must hold at least one example to evaluate on, got an empty dataset")
    return {"loss": loss_sum / n, "acc": correct / n}


def kernel_report(model) -> tuple[dict, list]:
    """Smoothness of every LongConv layer's effective kernel, and the kernels themselves.

    Returns ({"total_variation", "high_freq_fraction", "spectral_decay"} of
    ``regularize.smoothness_metrics``, each averaged over all rows of all layers, plus
    "zero_fraction" (taps Squash set to 0) and "per_layer": the same per layer},
    [kernel (channels*H, L) per layer]). Empty for the transformer.
    """
    from ..regularize import smoothness_metrics

    layers = long_conv_layers(model)
    if not layers:
        return {}, []
    kernels, per_layer = [], []
    with torch.no_grad():
        for layer in layers:
            k = layer.kernel().detach().cpu().reshape(-1, layer.l_max * (2 if layer.bidirectional else 1))
            rows = [smoothness_metrics(row) for row in k]
            m = {name: float(np.mean([r[name] for r in rows])) for name in rows[0]}
            m["zero_fraction"] = float((k == 0).double().mean())
            kernels.append(k.float())
            per_layer.append(m)
    summary = {m: float(np.mean([p[m] for p in per_layer])) for m in per_layer[0]}
    summary["per_layer"] = per_layer
    return summary, kernels


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------

def fit(cfg: RunConfig, out_dir, *, resume: bool = False, progress: bool = True,
        cache_dir=None, log=None) -> dict:
    """Train one run into ``out_dir`` (checkpoint.pt, metrics.json, kernels.pt); return metrics.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` if there is one (a finished run just
    returns its metrics); without it an existing checkpoint is an error, never overwritten.
    ``out_dir`` is checked to be writable before any data is loaded or any step taken.
    """
    from tqdm.auto import tqdm

    from .bench import check_writable

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or choose "
                              f"another --out")
    problem = check_writable(out)
    if problem:
        raise ValueError(problem.replace("--out", "out_dir", 1))
    d = dist_.setup()
    finished = False
    try:
        result = _fit(cfg, out, d, resume=resume, progress=progress and d.rank == 0,
                      cache_dir=cache_dir, log=log or (lambda s: tqdm.write(s)), tqdm=tqdm)
        finished = True
        return result
    finally:
        dist_.teardown(d, finished=finished)


@dataclass
class _Run:
    """What one run holds while it trains."""
    cfg: RunConfig
    d: dist_.Dist
    data: dict
    model: torch.nn.Module
    net: torch.nn.Module               # the model, wrapped in DDP when distributed
    opt: torch.optim.Optimizer
    sched: object
    steps_per_epoch: int
    n_params: int
    epoch: int = 0
    step: int = 0
    history: dict = field(default_factory=lambda: {k: [] for k in (
        "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
        "epoch_time", "lr", "step_loss")})

    def metrics(self, finished: bool) -> dict:
        h = self.history
        best = int(np.argmax(h["val_acc"])) if h["val_acc"] else None
        train = self.data["train"]
        return {"config": self.cfg.as_dict(), "label": self.cfg.label, "params": self.n_params,
                "world_size": self.d.world, "seq_len": train.seq_len, "n_train": len(train),
                "steps_per_epoch": self.steps_per_epoch, "epochs_done": self.epoch,
                "finished": finished, "best_epoch": None if best is None else best + 1,
                "test_acc_at_best_val": None if best is None else h["test_acc"][best],
                "final_test_acc": h["test_acc"][-1] if h["test_acc"] else None,
                "final_train_acc": h["train_acc"][-1] if h["train_acc"] else None,
                "time_per_epoch": float(np.mean(h["epoch_time"])) if h["epoch_time"] else None,
                "history": h}

    def checkpoint(self) -> dict:
        return {"config": self.cfg.as_dict(), "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "epoch": self.epoch, "step": self.step, "rng": dist_.rng_states(self.d),
                "history": self.history, "world_size": self.d.world}


def _build_for_data(cfg: RunConfig, data: dict) -> torch.nn.Module:
    """The run's model for its data (input statistics from the training set)."""
    train = data["train"]
    stats = dict(input_mean=round(float(train.x.mean()), 4), input_std=round(float(train.x.std()), 4))
    return build_model(cfg.model_config(train.d_input, train.n_classes, train.seq_len, **stats))


def restore_model(run_dir, cache_dir=None) -> tuple[torch.nn.Module, dict, RunConfig]:
    """The trained model of a run folder (its last checkpoint's weights, in eval mode), with the
    run's data {"train", "val", "test"} and its ``RunConfig``: to evaluate or dissect a finished
    run (``experiments.tap_ablation``). The checkpoint is checked as ``resume`` checks it."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"run_dir must be a run folder holding {CHECKPOINT_NAME}, got {str(run_dir)!r} "
                         f"(no {path})")
    ckpt = load_checkpoint(path)
    saved = dict(ckpt["config"])
    cfg = RunConfig(**{k: v for k, v in saved.items() if k != "net"}, net=ModelConfig(**saved["net"]))
    data = load_data(cfg, cache_dir)
    model = _build_for_data(cfg, data)
    model.load_state_dict(ckpt["model"])
    return model.eval(), data, cfg


def _start(cfg: RunConfig, d: dist_.Dist, cache_dir) -> _Run:
    data = load_data(cfg, cache_dir)
    train = data["train"]
    model = _build_for_data(cfg, data)
    model = model.to(d.device)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt = make_optimizer(model, cfg)
    sched = cosine_with_warmup(opt, int(cfg.warmup * total), total)
    torch.manual_seed(cfg.seed * 7919 + 1 + d.rank)     # dropout's stream: one per rank
    net = model
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    return _Run(cfg, d, data, model, net, opt, sched, steps_per_epoch, count_parameters(model))


def _restore(run: _Run, ckpt: dict) -> None:
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    rng = ckpt["rng"][run.d.rank]
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    run.epoch, run.step, run.history = ckpt["epoch"], ckpt["step"], ckpt["history"]


def _train_epoch(run: _Run, *, progress: bool, tqdm, kill_at: int) -> tuple[float, float, float]:
    """One epoch of steps; returns (summed loss, correct, examples) over all ranks."""
    cfg, d, train = run.cfg, run.d, run.data["train"]
    run.net.train()
    order = dist_.epoch_order(len(train), cfg.seed, run.epoch)
    loss_sum = correct = 0.0
    bar = tqdm(range(run.steps_per_epoch), disable=not progress, leave=False, dynamic_ncols=True,
               desc=f"{cfg.label} seed {cfg.seed} epoch {run.epoch + 1}/{cfg.epochs}")
    for b in bar:
        batch = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        x, y = train[dist_.rank_share(batch, d)]
        x, y = x.to(d.device), y.to(d.device)
        logits = run.net(x)
        summed = F.cross_entropy(logits, y, reduction="sum")
        run.opt.zero_grad(set_to_none=True)
        dist_.share_loss(summed, len(batch), d).backward()
        run.opt.step()
        run.sched.step()
        run.step += 1
        mine = float(summed.detach())
        run.history["step_loss"].append(dist_.all_sum([mine], d)[0] / len(batch))
        loss_sum += mine
        correct += float((logits.argmax(-1) == y).sum())
        bar.set_postfix(loss=f"{run.history['step_loss'][-1]:.3f}")
        if kill_at and run.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    loss_sum, correct = dist_.all_sum([loss_sum, correct], d)
    return loss_sum, correct, float(len(order))


def _fit(cfg, out, d, *, resume, progress, cache_dir, log, tqdm):
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    ckpt = (load_checkpoint(ckpt_path, cfg.as_dict(), d.world)
            if resume and ckpt_path.exists() else None)
    run = _start(cfg, d, cache_dir)
    if ckpt is not None:
        _restore(run, ckpt)
        if d.rank == 0 and run.epoch < cfg.epochs:
            log(f"resuming {out} at epoch {run.epoch}/{cfg.epochs} (step {run.step})")
    kill_at = int(os.environ.get("LONGCONV_EDU_KILL_AT_STEP", "0") or 0)
    h = run.history
    while run.epoch < cfg.epochs:
        t0 = time.perf_counter()
        loss_sum, correct, seen = _train_epoch(run, progress=progress, tqdm=tqdm, kill_at=kill_at)
        epoch_time = time.perf_counter() - t0
        val = evaluate(run.model, run.data["val"], dist_info=d)
        test = evaluate(run.model, run.data["test"], dist_info=d)
        run.epoch += 1
        for key, v in [("epoch", run.epoch), ("train_loss", loss_sum / seen),
                       ("train_acc", correct / seen), ("val_loss", val["loss"]),
                       ("val_acc", val["acc"]), ("test_loss", test["loss"]),
                       ("test_acc", test["acc"]), ("epoch_time", epoch_time),
                       ("lr", run.sched.get_last_lr()[0])]:
            h[key].append(v)
        state = run.checkpoint()                 # gathers every rank's RNG state: all ranks call it
        if d.rank == 0:
            save_checkpoint(ckpt_path, state)
            write_json(run.metrics(run.epoch == cfg.epochs), metrics_path)
            log(f"{cfg.label} seed {cfg.seed} epoch {run.epoch}/{cfg.epochs}: train loss "
                f"{h['train_loss'][-1]:.3f} acc {h['train_acc'][-1]:.3f} | val acc "
                f"{val['acc']:.3f} | test acc {test['acc']:.3f} | {epoch_time:.1f}s")
        dist_.barrier(d)

    result = run.metrics(True)
    result["kernel_metrics"], kernels = kernel_report(run.model)
    result["param_digest_per_rank"] = dist_.all_gather(param_digest(run.model), d)
    if d.rank == 0:
        if kernels:
            atomic_save({f"layer{i}": k for i, k in enumerate(kernels)}, out / KERNELS_NAME)
        write_json(result, metrics_path)
    return result
