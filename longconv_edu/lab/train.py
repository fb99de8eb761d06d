"""Rung 7 training: ``python -m longconv_edu train`` — one run, or a whole experiment, on CPU or
across processes.

One run (``fit``):

* data from ``data.load_task``, model from ``models.build_model``;
* AdamW with the layers' own parameter groups (``params.param_groups``: kernel parameters get the
  kernel learning rate and zero weight decay, as in the paper), a cosine learning-rate schedule
  after a linear warm-up;
* a tqdm progress bar per epoch, validation and test accuracy after every epoch, a metrics JSON
  (``metrics.json``) rewritten after every epoch, and a checkpoint (``checkpoint.pt``) written
  atomically (temporary file, then ``os.replace``) after every epoch, so a run killed at any
  moment loses at most the epoch in progress;
* ``resume=True`` continues a killed run exactly where its last checkpoint stopped: model,
  optimiser, schedule, every random state and the epoch/step counters are restored, so the
  resumed run takes the very same steps as one that was never interrupted (the shuffling order of
  epoch e is a function of (seed, e) only). Checkpoints load with ``torch.load(weights_only=True)``;
  a corrupted one, or one written by a different configuration, raises ``CheckpointError`` naming
  the file (which is left where it is).

Distributed: launched by ``torchrun --nproc_per_node=N -m longconv_edu train ...`` the same
code runs DistributedDataParallel (gloo on CPU, nccl on GPU). ``batch_size`` is the *global* batch;
each rank takes ``batch_size / N`` examples per step from a ``DistributedSampler``. Rank r's
batch b is examples ``perm[r::N]`` of the epoch's permutation, so the N ranks together see exactly
the single-process batch b: an N-process run follows the 1-process run up to float rounding.

Experiments (``run_experiment``, the ``EXPERIMENTS`` table below): ``--experiment digits-reg``
trains every row of that table with 3 seeds (digits-kernel-lr, digits-long, digits-small and
pathfinder-reg likewise), skipping finished runs and resuming killed ones, then writes the summary
JSON, a Markdown table, plots and the learned kernels to ``--out`` (course/results/training/).

Testing hook: if the environment variable ``LONGCONV_EDU_KILL_AT_STEP`` is set to n, the process
kills itself with SIGKILL right after optimiser step n (to test kill-and-resume for real).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_float, check_int
from ..layers import DEFAULT_LAM
from .data import TASKS, atomic_save, atomic_write, default_cache_dir, load_task
from .models import MODELS, REGULARIZERS, ModelConfig, build_model, count_parameters

__all__ = ["RunConfig", "CheckpointError", "fit", "evaluate", "load_checkpoint", "save_checkpoint",
           "cosine_with_warmup", "lr_factor", "kernel_report", "EXPERIMENTS", "run_experiment",
           "summarize_experiment", "add_arguments", "run"]

CHECKPOINT_FORMAT = "longconv_edu.lab.train/1"
CHECKPOINT_NAME, METRICS_NAME, KERNELS_NAME = "checkpoint.pt", "metrics.json", "kernels.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not ours, or written by another run."""


@dataclass
class RunConfig:
    """Everything that defines a run (and must match when it is resumed)."""
    task: str = "digits"
    model: str = "longconv"
    reg: str = "none"
    seed: int = 0
    epochs: int = 10
    batch_size: int = 32               # global batch (split evenly over DDP ranks)
    lr: float = 0.01
    kernel_lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: float = 0.1                # fraction of all steps spent warming up linearly
    d_model: int = 32
    n_layers: int = 2
    dropout: float = 0.1
    kernel_dropout: float = 0.0
    lam: float = DEFAULT_LAM
    smooth_width: int = 7
    n_heads: int = 2
    backend: str = "auto"
    size: int = 32                     # image side: L = size**2 (digits, pathfinder)
    length: int = 1024                 # noisy-digits: sequence length L (64 pixels, then noise)
    permute: bool = False              # digits only: fixed pixel permutation
    data_seed: int = 0                 # the train/val/test split (digits) or generator (pathfinder)
    n_train: int = 0                   # 0: all; digits: first n of the train split; pathfinder: generate n
    learned_butterfly: bool = False    # rung 8: learned Monarch DFT blocks in every LongConv

    def __post_init__(self):
        check_choice(self.task, "task", TASKS)
        check_choice(self.model, "model", MODELS)
        check_choice(self.reg, "reg", REGULARIZERS)
        check_int(self.seed, "seed", min=0)
        check_int(self.epochs, "epochs", min=1)
        check_int(self.batch_size, "batch_size", min=1)
        check_float(self.lr, "lr", min=0.0, min_inclusive=False)
        check_float(self.kernel_lr, "kernel_lr", min=0.0, min_inclusive=False)
        check_float(self.weight_decay, "weight_decay", min=0.0)
        check_float(self.warmup, "warmup", min=0.0, max=1.0, max_inclusive=False)
        check_int(self.size, "size", min=8)
        check_int(self.data_seed, "data_seed", min=0)
        check_int(self.n_train, "n_train", min=0)
        if not isinstance(self.permute, bool):
            raise TypeError(f"permute must be a bool, got {self.permute!r}")
        self.model_config(1, 2, 8)              # validates the model's own settings

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def model_config(self, d_input: int, n_classes: int, l_max: int, input_mean: float = 0.0,
                     input_std: float = 1.0) -> ModelConfig:
        return ModelConfig(d_input=d_input, n_classes=n_classes, l_max=l_max, model=self.model,
                           reg=self.reg, d_model=self.d_model, n_layers=self.n_layers,
                           dropout=self.dropout, kernel_dropout=self.kernel_dropout, lam=self.lam,
                           smooth_width=self.smooth_width, n_heads=self.n_heads,
                           backend=self.backend, kernel_lr=self.kernel_lr, seed=self.seed,
                           input_mean=input_mean, input_std=input_std,
                           learned_butterfly=self.learned_butterfly)

    @property
    def label(self) -> str:
        label = self.model if self.model != "longconv" else f"longconv/{self.reg}"
        return label + ("+learned-butterfly" if self.learned_butterfly else "")   # rung 8


# ---------------------------------------------------------------------------------------------
# data, optimiser, schedule
# ---------------------------------------------------------------------------------------------

def load_data(cfg: RunConfig, cache_dir=None) -> dict:
    """{"train", "val", "test"} SequenceDatasets for the run's task."""
    if cfg.task == "digits":
        kw = dict(seed=cfg.data_seed, size=cfg.size, permute=cfg.permute, cache_dir=cache_dir)
        out = {s: load_task("digits", s, **kw) for s in ("train", "val", "test")}
        if cfg.n_train:
            out["train"] = out["train"].subset(min(cfg.n_train, len(out["train"])))
        return out
    if cfg.permute:
        raise ValueError("permute applies to task 'digits' only")
    if cfg.task == "noisy-digits":
        kw = dict(seed=cfg.data_seed, length=cfg.length, cache_dir=cache_dir)
        out = {s: load_task("noisy-digits", s, **kw) for s in ("train", "val", "test")}
        if cfg.n_train:
            out["train"] = out["train"].subset(min(cfg.n_train, len(out["train"])))
        return out
    n = cfg.n_train or 4000
    kw = dict(seed=cfg.data_seed, size=cfg.size, n_train=n, n_val=max(n // 8, 1),
              n_test=max(n // 4, 1), cache_dir=cache_dir)
    return {s: load_task("pathfinder", s, **kw) for s in ("train", "val", "test")}


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """The schedule's multiplier at ``step`` (0-based): (step + 1) / (warmup_steps + 1) while
    warming up, then half a cosine from 1 down to 0 at ``total_steps``."""
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
    from ..params import param_groups

    return torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay))


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------

def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` atomically (a killed writer leaves the previous checkpoint intact)."""
    atomic_save({"format": CHECKPOINT_FORMAT, **state}, Path(path))


def load_checkpoint(path, cfg: RunConfig | None = None, world_size: int | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check it belongs to this run.

    Raises ``CheckpointError`` (naming the file, which is left in place) if it cannot be read, is
    not a training checkpoint of this library, or was written with a different ``cfg`` or number
    of processes.
    """
    path = Path(path)
    keep = ("The file was left in place; delete it (or pass another --out) to start afresh.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: "
                              f"{str(e)[:200]}); it may be truncated or corrupted. {keep}") from e
    needed = {"format", "config", "model", "optimizer", "scheduler", "epoch", "step", "rng",
              "history", "world_size"}
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not needed <= set(ckpt):
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint (got "
                              f"{type(ckpt).__name__} with format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else None!r}). {keep}")
    if cfg is not None:
        mine = cfg.as_dict()
        diff = [f"{k}={ckpt['config'].get(k)!r} there, {v!r} here" for k, v in mine.items()
                if ckpt["config"].get(k) != v]
        if diff:
            raise CheckpointError(f"checkpoint {path} was written by a different run: "
                                  f"{'; '.join(diff)}. Resume with the same options, or pass "
                                  f"another --out. {keep}")
    if world_size is not None and ckpt["world_size"] != world_size:
        raise CheckpointError(f"checkpoint {path} was written by {ckpt['world_size']} process(es) "
                              f"but this run has {world_size}; resume with the same number (its "
                              f"random states are per process). {keep}")
    return ckpt


def _write_json(obj, path: Path) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1), binary=False)


# ---------------------------------------------------------------------------------------------
# distributed helpers (all no-ops in a single process)
# ---------------------------------------------------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def on(self) -> bool:
        return self.world > 1


def _dist_setup() -> _Dist:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ["RANK"])
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return _Dist(rank, world, device, owns)


def _all_sum(values: list[float], d: _Dist) -> list[float]:
    if not d.on:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def _rng_states(d: _Dist) -> list:
    """Every rank's torch RNG state (and CUDA's), gathered on all ranks, as tensors."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    if not d.on:
        return [state]
    import torch.distributed as dist

    out = [None] * d.world
    dist.all_gather_object(out, state)
    return out


def _param_digest(model: torch.nn.Module) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in model.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# evaluation and kernel report
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, ds, *, batch_size: int = 128, dist_info: _Dist | None = None) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on dataset ``ds`` (sharded over DDP ranks)."""
    d = dist_info or _Dist()
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
    loss_sum, correct, n = _all_sum([loss_sum, correct, float(len(idx))], d)
    return {"loss": loss_sum / n, "acc": correct / n}


def kernel_report(model) -> tuple[dict, list]:
    """Smoothness metrics of every LongConv layer's effective kernel, and the kernels themselves.

    Returns ({"total_variation", "high_freq_fraction", "spectral_decay"} each averaged over all
    rows of all layers, plus "per_layer": the same per layer}, [kernel (channels*H, L) per layer]).
    Empty for the transformer.
    """
    from ..regularize import high_freq_fraction, spectral_decay, total_variation
    from .models import long_conv_layers

    layers = long_conv_layers(model)
    if not layers:
        return {}, []
    kernels, per_layer = [], []
    with torch.no_grad():
        for layer in layers:
            k = layer.kernel().detach().cpu().reshape(-1, layer.l_max * (2 if layer.bidirectional else 1))
            kernels.append(k.float())
            per_layer.append({"total_variation": float(total_variation(k).mean()),
                              "high_freq_fraction": float(high_freq_fraction(k).mean()),
                              "spectral_decay": float(spectral_decay(k).mean()),
                              "zero_fraction": float((k == 0).double().mean())})
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
    """
    from tqdm.auto import tqdm

    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg must be a RunConfig, got {type(cfg).__name__}")
    out = Path(out_dir)
    d = _dist_setup()
    try:
        return _fit(cfg, out, d, resume=resume, progress=progress and d.rank == 0,
                    cache_dir=cache_dir, log=log or (lambda s: tqdm.write(s)), tqdm=tqdm)
    finally:
        if d.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(cfg, out, d, *, resume, progress, cache_dir, log, tqdm):
    from torch.utils.data import DistributedSampler

    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    if cfg.batch_size % d.world:
        raise ValueError(f"batch_size must be divisible by the number of processes ({d.world}), "
                         f"got {cfg.batch_size}")
    if ckpt_path.exists() and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue that run, or choose "
                              f"another --out")
    ckpt = load_checkpoint(ckpt_path, cfg, d.world) if resume and ckpt_path.exists() else None

    data = load_data(cfg, cache_dir)
    train = data["train"]
    stats = dict(input_mean=round(float(train.x.mean()), 4), input_std=round(float(train.x.std()), 4))
    model = build_model(cfg.model_config(train.d_input, train.n_classes, train.seq_len, **stats))
    model = model.to(d.device)
    n_params = count_parameters(model)
    per_rank = cfg.batch_size // d.world
    sampler = DistributedSampler(train, num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    steps_per_epoch = math.ceil(len(sampler) / per_rank)
    total = steps_per_epoch * cfg.epochs
    opt = make_optimizer(model, cfg)
    sched = cosine_with_warmup(opt, int(cfg.warmup * total), total)
    # dropout's random stream: one per rank, fixed by the seed
    torch.manual_seed(cfg.seed * 7919 + 1 + d.rank)

    history = {"epoch": [], "train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [],
               "test_loss": [], "test_acc": [], "epoch_time": [], "lr": [], "step_loss": []}
    epoch = step = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"][d.rank]["torch"])
        if "cuda" in ckpt["rng"][d.rank] and torch.cuda.is_available():
            torch.cuda.set_rng_state(ckpt["rng"][d.rank]["cuda"])
        epoch, step, history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        if d.rank == 0 and epoch < cfg.epochs:
            log(f"resuming {out} at epoch {epoch}/{cfg.epochs} (step {step})")
    net = model
    if d.on:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)

    kill_at = int(os.environ.get("LONGCONV_EDU_KILL_AT_STEP", "0") or 0)
    out.mkdir(parents=True, exist_ok=True)

    def metrics(finished: bool) -> dict:
        best = int(np.argmax(history["val_acc"])) if history["val_acc"] else None
        return {"config": cfg.as_dict(), "label": cfg.label, "params": n_params,
                "world_size": d.world, "seq_len": train.seq_len, "n_train": len(train),
                "steps_per_epoch": steps_per_epoch, "epochs_done": epoch, "finished": finished,
                "best_epoch": None if best is None else best + 1,
                "test_acc_at_best_val": None if best is None else history["test_acc"][best],
                "final_test_acc": history["test_acc"][-1] if history["test_acc"] else None,
                "time_per_epoch": float(np.mean(history["epoch_time"])) if history["epoch_time"] else None,
                "history": history}

    while epoch < cfg.epochs:
        net.train()
        sampler.set_epoch(epoch)
        order = torch.tensor(list(iter(sampler)))
        loss_sum = correct = 0.0
        t0 = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.label} seed {cfg.seed} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True)
        for b in bar:
            x, y = train[order[b * per_rank:(b + 1) * per_rank]]
            x, y = x.to(d.device), y.to(d.device)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            lval = float(loss.detach())
            history["step_loss"].append(_all_sum([lval], d)[0] / d.world if d.on else lval)
            loss_sum += lval * len(y)
            correct += float((logits.argmax(-1) == y).sum())
            bar.set_postfix(loss=f"{lval:.3f}")
            if kill_at and step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        epoch_time = time.perf_counter() - t0
        loss_sum, correct, seen = _all_sum([loss_sum, correct, float(len(order))], d)
        val = evaluate(model, data["val"], dist_info=d)
        test = evaluate(model, data["test"], dist_info=d)
        epoch += 1
        for key, v in [("epoch", epoch), ("train_loss", loss_sum / seen), ("train_acc", correct / seen),
                       ("val_loss", val["loss"]), ("val_acc", val["acc"]), ("test_loss", test["loss"]),
                       ("test_acc", test["acc"]), ("epoch_time", epoch_time),
                       ("lr", sched.get_last_lr()[0])]:
            history[key].append(v)
        rng = _rng_states(d)
        if d.rank == 0:
            save_checkpoint(ckpt_path, {"config": cfg.as_dict(), "model": model.state_dict(),
                                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                        "epoch": epoch, "step": step, "rng": rng, "history": history,
                                        "world_size": d.world})
            _write_json(metrics(epoch == cfg.epochs), metrics_path)
            log(f"{cfg.label} seed {cfg.seed} epoch {epoch}/{cfg.epochs}: train loss "
                f"{history['train_loss'][-1]:.3f} acc {history['train_acc'][-1]:.3f} | val acc "
                f"{val['acc']:.3f} | test acc {test['acc']:.3f} | {epoch_time:.1f}s")
        if d.on:
            import torch.distributed as dist

            dist.barrier()

    result = metrics(True)
    result["kernel_metrics"], kernels = kernel_report(model)
    digests = [_param_digest(model)]
    if d.on:
        import torch.distributed as dist

        digests = [None] * d.world
        dist.all_gather_object(digests, _param_digest(model))
    result["param_digest_per_rank"] = digests
    if d.rank == 0:
        if kernels:
            atomic_save({f"layer{i}": k for i, k in enumerate(kernels)}, out / KERNELS_NAME)
        _write_json(result, metrics_path)
    return result


# ---------------------------------------------------------------------------------------------
# experiments: one documented command per results table
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Experiment:
    description: str
    base: dict                         # RunConfig fields shared by every run
    runs: tuple                        # per table row: (model, reg) or (model, reg, {overrides})
    seeds: tuple = (0, 1, 2)

    def configs(self, overrides: dict | None = None, seeds=None) -> list:
        """[[RunConfig per seed] per row]."""
        rows = []
        for spec in self.runs:
            m, r, extra = (*spec, {})[:3]
            rows.append([RunConfig(**{**self.base, **extra, **(overrides or {}), "model": m,
                                      "reg": r, "seed": s}) for s in (seeds or self.seeds)])
        return rows


_CONV_ROWS = (("longconv", "none"), ("longconv", "squash"), ("longconv", "smooth"),
              ("longconv", "squash+smooth"))

EXPERIMENTS = {
    "digits-reg": Experiment(
        "sequential digits 16x16 (L = 256): long conv with no regularisation, Squash, Smooth, "
        "Squash+Smooth, the S4D-style SSM kernel and a Transformer, 3 seeds each",
        dict(task="digits", size=16, epochs=10, batch_size=32, d_model=32, n_layers=2,
             lr=0.01, kernel_lr=1e-3, weight_decay=0.05, dropout=0.1, kernel_dropout=0.0,
             smooth_width=7, n_heads=2),
        _CONV_ROWS + (("ssm", "none"), ("transformer", "none", {"lr": 0.003}))),
    "digits-small": Experiment(
        "sequential digits 16x16 (L = 256) with only 200 training images and 30 epochs: does a "
        "kernel regulariser help when data is scarce?",
        dict(task="digits", size=16, epochs=30, batch_size=32, d_model=32, n_layers=2,
             lr=0.01, kernel_lr=1e-3, weight_decay=0.05, dropout=0.1, kernel_dropout=0.0,
             smooth_width=7, n_train=200),
        (("longconv", "none"), ("longconv", "smooth"), ("longconv", "squash+smooth")),
        seeds=(0, 1)),
    "digits-kernel-lr": Experiment(
        "sequential digits 16x16 (L = 256) as digits-reg, but the kernels' learning rate 10x "
        "higher (1e-2, the model's): AdamW moves every tap by about the learning rate whatever "
        "the size of its gradient; do faster-moving kernels need a regulariser?",
        dict(task="digits", size=16, epochs=10, batch_size=32, d_model=32, n_layers=2,
             lr=0.01, kernel_lr=1e-2, weight_decay=0.05, dropout=0.1, kernel_dropout=0.0,
             smooth_width=7),
        (("longconv", "none"), ("longconv", "smooth"), ("longconv", "squash+smooth")),
        seeds=(0, 1)),
    "digits-long": Experiment(
        "sequential digits 32x32 (L = 1024), one seed: does a kernel four times longer change "
        "the picture?",
        dict(task="digits", size=32, epochs=8, batch_size=32, d_model=32, n_layers=2,
             lr=0.01, kernel_lr=1e-3, weight_decay=0.05, dropout=0.1, kernel_dropout=0.0,
             smooth_width=7),
        (("longconv", "none"), ("longconv", "smooth"), ("longconv", "squash+smooth")),
        seeds=(0,)),
    "pathfinder-reg": Experiment(
        "Pathfinder-style 32x32 (L = 1024): long conv with and without regularisation, and the "
        "SSM kernel for reference",
        dict(task="pathfinder", size=32, epochs=5, batch_size=32, d_model=32, n_layers=2,
             lr=0.01, kernel_lr=1e-3, weight_decay=0.05, dropout=0.1, kernel_dropout=0.0,
             smooth_width=7, n_train=2000),
        (("longconv", "none"), ("longconv", "squash+smooth"), ("ssm", "none")), seeds=(0,)),
}


def _run_dir(runs_dir: Path, cfg: RunConfig) -> Path:
    return runs_dir / f"{cfg.label.replace('/', '-').replace('+', '_')}-seed{cfg.seed}"


def _fit_quietly(cfg, run_dir, cache_dir):
    """One run of a sweep in a worker process (one torch thread, a line per epoch)."""
    torch.set_num_threads(1)
    fit(cfg, run_dir, resume=True, progress=False, cache_dir=cache_dir, log=print)
    return str(run_dir)


def run_experiment(name: str, results_dir, *, runs_dir=None, cache_dir=None, progress: bool = True,
                   overrides: dict | None = None, jobs: int = 1, log=print) -> dict:
    """Train every (row, seed) of ``EXPERIMENTS[name]`` (finished runs are skipped, killed ones
    resumed) into ``runs_dir`` (default: the cache folder), ``jobs`` runs at a time (each in its
    own process with one thread when jobs > 1), then summarise into ``results_dir``."""
    name = check_choice(name, "experiment", EXPERIMENTS)
    jobs = check_int(jobs, "jobs", min=1)
    exp = EXPERIMENTS[name]
    runs_dir = Path(runs_dir) if runs_dir else default_cache_dir(cache_dir) / "runs" / name
    cfgs = [c for row in exp.configs(overrides) for c in row]
    t0 = time.perf_counter()
    if jobs == 1:
        for i, cfg in enumerate(cfgs):
            log(f"[{name} {i + 1}/{len(cfgs)}] {cfg.label} seed {cfg.seed} "
                f"({time.perf_counter() - t0:.0f}s elapsed)")
            fit(cfg, _run_dir(runs_dir, cfg), resume=True, progress=progress, cache_dir=cache_dir,
                log=log)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        load_data(cfgs[0], cache_dir)                       # build the data cache once, first
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_fit_quietly, c, _run_dir(runs_dir, c), cache_dir) for c in cfgs]
            for i, f in enumerate(futures):
                log(f"[{name} {i + 1}/{len(cfgs)}] finished {f.result()} "
                    f"({time.perf_counter() - t0:.0f}s elapsed)")
    return summarize_experiment(name, results_dir, runs_dir=runs_dir, overrides=overrides)


def summarize_experiment(name: str, results_dir, *, runs_dir, overrides: dict | None = None) -> dict:
    """Aggregate finished runs into ``results_dir``: NAME.json (per row: test accuracy mean and std
    over seeds, time per epoch, parameters, kernel metrics, curves), NAME.md (the table),
    NAME-kernels.npz (a few learned kernel rows per row, first seed) and NAME-*.png plots."""
    exp = EXPERIMENTS[name]
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    rows, kernels = [], {}
    for row in exp.configs(overrides):
        runs = []
        for cfg in row:
            met = json.loads((_run_dir(Path(runs_dir), cfg) / METRICS_NAME).read_text())
            if not met.get("finished") or "kernel_metrics" not in met:
                raise ValueError(f"run {cfg.label} seed {cfg.seed} in {runs_dir} has not finished")
            runs.append(met)
            kpath = _run_dir(Path(runs_dir), cfg) / KERNELS_NAME
            if cfg is row[0] and kpath.exists():
                ks = torch.load(kpath, weights_only=True)
                for lname, k in ks.items():
                    kernels[f"{cfg.label}/{lname}"] = k[:8].numpy().astype(np.float32)
        acc = np.array([x["test_acc_at_best_val"] for x in runs]) * 100
        final = np.array([x["final_test_acc"] for x in runs]) * 100
        km = [x["kernel_metrics"] for x in runs if x["kernel_metrics"]]
        rows.append({
            "label": runs[0]["label"], "model": row[0].model, "reg": row[0].reg,
            "seeds": [c.seed for c in row], "lr": row[0].lr,
            "test_acc_mean": float(acc.mean()),
            "test_acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
            "test_acc_per_seed": acc.round(2).tolist(),
            "final_test_acc_mean": float(final.mean()),
            "final_test_acc_std": float(final.std(ddof=1)) if len(final) > 1 else None,
            "time_per_epoch_s": float(np.mean([x["time_per_epoch"] for x in runs])),
            "params": runs[0]["params"], "seq_len": runs[0]["seq_len"],
            "kernel_metrics": ({k: float(np.mean([x[k] for x in km])) for k in km[0] if k != "per_layer"}
                               if km else {}),
            "curves": {k: np.mean([x["history"][k] for x in runs], axis=0).round(5).tolist()
                       for k in ("train_loss", "val_acc", "test_acc")},
        })
    summary = {"experiment": name, "description": exp.description,
               "command": f"python -m longconv_edu train --experiment {name} --out {results_dir}",
               "config": {**exp.base, **(overrides or {})}, "rows": rows,
               "note": "test accuracy is measured at the epoch of best validation accuracy; "
                       "time per epoch is training wall time on the machine that ran it"}
    _write_json(summary, results_dir / f"{name}.json")
    (results_dir / f"{name}.md").write_text(results_table(summary))
    if kernels:
        np.savez_compressed(results_dir / f"{name}-kernels.npz", **kernels)
    _plot_summary(summary, kernels, results_dir, name)
    return summary


def results_table(summary: dict) -> str:
    """A Markdown table of an experiment summary."""
    lines = [f"# {summary['experiment']}", "", summary["description"], "",
             f"Command: `{summary['command']}`", "",
             "| model | test acc % (mean ± std) | per seed | s / epoch | params | kernel TV | "
             "high-freq energy | spectral decay | zero taps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        km = r["kernel_metrics"]
        f = (lambda k, fmt, km=km: format(km[k], fmt) if k in km else "–")
        acc = (f"{r['test_acc_mean']:.1f} ± {r['test_acc_std']:.1f}" if r["test_acc_std"] is not None
               else f"{r['test_acc_mean']:.1f} (1 seed)")
        lines.append(f"| {r['label']} | {acc} | "
                     f"{', '.join(f'{a:.1f}' for a in r['test_acc_per_seed'])} | "
                     f"{r['time_per_epoch_s']:.1f} | {r['params']:,} | {f('total_variation', '.3f')} | "
                     f"{f('high_freq_fraction', '.3f')} | {f('spectral_decay', '.2f')} | "
                     f"{f('zero_fraction', '.2f')} |")
    lines += ["", summary["note"] + ".", ""]
    return "\n".join(lines)


def _plot_summary(summary, kernels, results_dir: Path, name: str) -> None:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import viz

    fig = viz.plot_training_curves(summary)
    fig.savefig(results_dir / f"{name}-curves.png", dpi=80)
    plt.close(fig)
    if kernels:
        fig = viz.plot_kernel_gallery(kernels, layer="layer0")
        fig.savefig(results_dir / f"{name}-kernels.png", dpi=80)
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------

_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def add_arguments(p) -> None:
    """Options of ``python -m longconv_edu train`` (unset ones take the task's defaults)."""
    import argparse

    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    g = p.add_argument_group("what to train")
    g.add_argument("--task", choices=list(TASKS), help="dataset (default digits)")
    g.add_argument("--model", choices=list(MODELS), help="sequence mixer (default longconv)")
    g.add_argument("--reg", choices=list(REGULARIZERS),
                   help="kernel regulariser of the long conv (default none)")
    g.add_argument("--seed", type=int, help="model initialisation and shuffling seed (default 0)")
    g.add_argument("--experiment", choices=list(EXPERIMENTS),
                   help="run a whole results table (every row x 3 seeds) instead of one run; "
                        "--out is then the results folder")
    g = p.add_argument_group("hyperparameters (defaults: RunConfig in longconv_edu/train.py)")
    for name, kind, help_text in [
            ("epochs", int, "epochs"), ("batch_size", int, "global batch size"),
            ("lr", float, "peak learning rate of the model"),
            ("kernel_lr", float, "peak learning rate of the kernels (weight decay 0)"),
            ("weight_decay", float, "AdamW weight decay of the model"),
            ("warmup", float, "fraction of steps spent warming up"),
            ("d_model", int, "channels H"), ("n_layers", int, "residual blocks"),
            ("dropout", float, "dropout"), ("kernel_dropout", float, "dropout on kernel taps"),
            ("lam", float, "Squash threshold (used when --reg has squash)"),
            ("smooth_width", int, "Smooth window (used when --reg has smooth)"),
            ("n_heads", int, "attention heads (transformer)"),
            ("backend", str, "long_conv backend"),
            ("size", int, "image side; L = size**2 (digits: any >= 8, pathfinder: 32 or 64)"),
            ("data_seed", int, "seed of the data split / generator"),
            ("n_train", int, "training examples (0: all; pathfinder: how many to generate)")]:
        g.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help=help_text)
    g.add_argument("--permute", action="store_true", default=None,
                   help="digits: read pixels in one fixed random order")
    g.add_argument("--learned-butterfly", action="store_true", default=None,
                   help="rung 8: learn the Monarch DFT blocks of every LongConv (start: the DFT)")
    g = p.add_argument_group("where and how")
    g.add_argument("--out", required=True, help="run folder (checkpoint, metrics.json), or the "
                                                "results folder with --experiment")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--runs-dir", help="with --experiment: where the runs go "
                                      "(default CACHE/runs/EXPERIMENT)")
    g.add_argument("--cache-dir", help="data cache (default $LONGCONV_EDU_CACHE or "
                                       "~/.cache/longconv_edu)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--jobs", type=int, default=1, help="with --experiment: runs trained at once, "
                                                       "each in its own one-thread process")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Entry point of the ``train`` command."""
    explicit = {k: getattr(args, k) for k in _FIELDS if getattr(args, k, None) is not None}
    try:
        if args.threads is not None:
            torch.set_num_threads(check_int(args.threads, "--threads", min=1))
        if args.experiment:
            bad = sorted(set(explicit) & {"task", "model", "reg", "seed"})
            if bad:
                raise ValueError(f"--experiment fixes {', '.join('--' + b for b in bad)}; "
                                 f"leave them out")
            summary = run_experiment(args.experiment, args.out, runs_dir=args.runs_dir,
                                     cache_dir=args.cache_dir, progress=not args.no_progress,
                                     overrides=explicit or None, jobs=args.jobs)
            print(results_table(summary))
            return 0
        cfg = RunConfig(**explicit)
        result = fit(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                     cache_dir=args.cache_dir)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"{cfg.label} seed {cfg.seed}: test acc {result['test_acc_at_best_val']:.4f} at best "
                  f"val epoch {result['best_epoch']}, final {result['final_test_acc']:.4f}; "
                  f"{result['params']:,} parameters; metrics in {Path(args.out) / METRICS_NAME}")
        return 0
    except (ValueError, TypeError, FileExistsError) as e:
        print(f"python -m longconv_edu train: error: {e}", file=sys.stderr)
        return 2
