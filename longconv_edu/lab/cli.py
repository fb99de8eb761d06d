"""The ``train`` command: ``python -m longconv_edu train`` — one run, or a whole experiment.

Every option is generated from the dataclass field it sets (``train.RunConfig`` and its
``models.ModelConfig``), so ``--help`` shows the defaults those classes really have, and an
option left out takes that default (an experiment's own settings, with ``--experiment``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from .._checks import check_int
from .data import DIGIT_PLACES, TASKS
from .experiments import EXPERIMENTS, results_table, run_experiment
from .models import MODELS, REGULARIZERS, ModelConfig
from .train import METRICS_NAME, MODEL_FIELDS, RunConfig, fit

__all__ = ["add_arguments", "run"]

#: What each setting means, for --help (the default comes from its dataclass).
_HELP = {
    "task": "dataset", "model": "sequence mixer", "reg": "kernel regulariser of the long conv",
    "seed": "model initialisation and shuffling seed",
    "epochs": "epochs", "batch_size": "global batch size (shared out over processes)",
    "lr": "peak learning rate of the model", "weight_decay": "AdamW weight decay of the model",
    "warmup": "fraction of steps spent warming up",
    "size": "digits: image side, L = size**2 (any >= 8)",
    "length": "noisy-digits: sequence length L",
    "digit_at": "noisy-digits: the digit first (start) or last (end), noise elsewhere",
    "data_seed": "seed of the data split / generator",
    "n_train": "training examples (0: all; else the first n of the train split)",
    "permute": "digits: read pixels in one fixed random order",
    "d_model": "channels H", "n_layers": "residual blocks", "dropout": "activation dropout",
    "kernel_dropout": "dropout on kernel taps (the paper's kernel dropout)",
    "lam": "Squash threshold (used when --reg has squash)",
    "smooth_width": "Smooth window (used when --reg has smooth)",
    "n_heads": "attention heads (transformer)", "ssm_state_dim": "state size (ssm)",
    "backend": "long_conv backend (auto: the fastest for the device)",
    "kernel_lr": "peak learning rate of the kernels (weight decay 0)",
    "learned_butterfly": "rung 8: learn the Monarch DFT blocks of every LongConv (start: the DFT)",
}
_CHOICES = {"task": list(TASKS), "digit_at": list(DIGIT_PLACES), "model": list(MODELS), "reg": list(REGULARIZERS)}


def _settings() -> list[tuple[str, object]]:
    """(name, default) of every flat setting, run settings first."""
    run = [(f.name, f.default) for f in dataclasses.fields(RunConfig) if f.name != "net"]
    net = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    return run + [(n, net[n]) for n in MODEL_FIELDS]


def add_arguments(p) -> None:
    """Options of ``python -m longconv_edu train``."""
    groups = {"run": p.add_argument_group("the run (train.RunConfig)"),
              "net": p.add_argument_group("the model (models.ModelConfig)")}
    for name, default in _settings():
        g = groups["net" if name in MODEL_FIELDS else "run"]
        flag = "--" + name.replace("_", "-")
        text = f"{_HELP.get(name, name)} (default: {default})"
        if isinstance(default, bool):
            g.add_argument(flag, dest=name, action="store_true", default=argparse.SUPPRESS, help=text)
        else:
            g.add_argument(flag, dest=name, type=type(default), choices=_CHOICES.get(name),
                           default=argparse.SUPPRESS, help=text)
    g = p.add_argument_group("experiments")
    g.add_argument("--experiment", choices=list(EXPERIMENTS),
                   help="run a whole results table (every row x its seeds) instead of one run; "
                        "--out is then the results folder; options given override its settings")
    g.add_argument("--seeds", type=int, nargs="+", help="with --experiment: these seeds instead "
                                                        "of the experiment's own")
    g.add_argument("--jobs", type=int, default=1, help="with --experiment: runs trained at once, "
                                                       "each in its own one-thread process")
    g.add_argument("--runs-dir", help="with --experiment: where the runs go "
                                      "(default CACHE/runs/EXPERIMENT)")
    g = p.add_argument_group("where and how")
    g.add_argument("--out", required=True, help="run folder (checkpoint, metrics.json), or the "
                                                "results folder with --experiment")
    g.add_argument("--resume", action="store_true", help="continue the run in --out")
    g.add_argument("--cache-dir", help="data cache (default $LONGCONV_EDU_CACHE or "
                                       "~/.cache/longconv_edu)")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """Entry point of the ``train`` command."""
    explicit = {name: getattr(args, name) for name, _ in _settings() if hasattr(args, name)}
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
                                     overrides=explicit or None, jobs=args.jobs, seeds=args.seeds)
            if "rows" in summary:
                print(results_table(summary))
            return 0
        if args.seeds is not None or args.jobs != 1 or args.runs_dir is not None:
            raise ValueError("--seeds, --jobs and --runs-dir apply with --experiment only")
        cfg = RunConfig.from_flat(**explicit)
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
