"""Rung 7 checkpoints: written atomically, read with ``weights_only=True``, verified by a digest.

A checkpoint is a dict of tensors, numbers, strings and lists. ``save_checkpoint`` stores with it
a SHA-256 digest of its whole content (every tensor's dtype, shape and bytes, every other leaf's
repr, in key order); ``load_checkpoint`` recomputes it, so a file whose bytes changed after it
was written (a flipped bit inside a tensor still unpickles) raises ``CheckpointError`` instead of
resuming on damaged weights.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .data import atomic_save

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "state_digest", "param_digest"]

CHECKPOINT_FORMAT = "longconv_edu.lab.train/2"     # 2: nested run config, content digest
_NEEDED = {"format", "digest", "config", "model", "optimizer", "scheduler", "epoch", "step", "rng",
           "history", "world_size"}
_KEEP = "The file was left in place; delete it (or pass another --out) to start afresh."


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, damaged, not ours, or written by another run."""


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(repr(obj).encode())


def state_digest(state: dict) -> str:
    """SHA-256 (hex) of everything in ``state`` except its own "digest" entry."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (a checkpoint's content), got {type(state).__name__}")
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def param_digest(model: torch.nn.Module) -> str:
    """A short digest of a model's weights (to check that DDP ranks hold identical weights)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    h = hashlib.sha256()
    _feed(h, model.state_dict())
    return h.hexdigest()[:16]


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` with its format and digest atomically (a killed writer leaves the previous
    checkpoint intact)."""
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict (a checkpoint's content), got {type(state).__name__}")
    state = {"format": CHECKPOINT_FORMAT, **state}
    state["digest"] = state_digest(state)
    atomic_save(state, Path(path))


def load_checkpoint(path, config: dict | None = None, world_size: int | None = None) -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check that it is intact and
    belongs to this run.

    ``config``: the run's ``RunConfig.as_dict()``; every entry must match. Raises
    ``CheckpointError`` (naming the file, which is left in place) if the file cannot be read, is
    not a checkpoint of this library, fails its digest, or was written with another configuration
    or number of processes.
    """
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict (RunConfig.as_dict()) or None, got {type(config).__name__}")
    if world_size is not None and (isinstance(world_size, bool) or not isinstance(world_size, int)
                                   or world_size < 1):
        raise ValueError(f"world_size must be an int >= 1 or None, got {world_size!r}")
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: "
                              f"{str(e)[:200]}); it may be truncated or corrupted. {_KEEP}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or not _NEEDED <= set(ckpt):
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint (got "
                              f"{type(ckpt).__name__} with format "
                              f"{ckpt.get('format') if isinstance(ckpt, dict) else None!r}). {_KEEP}")
    if state_digest(ckpt) != ckpt["digest"]:
        raise CheckpointError(f"checkpoint {path} fails its digest: its content changed after it "
                              f"was written (a damaged disk or copy); it cannot be trusted. {_KEEP}")
    if config is not None:
        theirs = _flat(ckpt["config"])
        diff = [f"{k}={theirs.get(k)!r} there, {v!r} here" for k, v in _flat(config).items()
                if theirs.get(k) != v]
        if diff:
            raise CheckpointError(f"checkpoint {path} was written by a different run: "
                                  f"{'; '.join(diff)}. Resume with the same options, or pass "
                                  f"another --out. {_KEEP}")
    if world_size is not None and ckpt["world_size"] != world_size:
        raise CheckpointError(f"checkpoint {path} was written by {ckpt['world_size']} process(es) "
                              f"but this run has {world_size}; resume with the same number (its "
                              f"random states are per process). {_KEEP}")
    return ckpt


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
