"""Rung 6: parameter tags and AdamW groups, so kernels get their own learning rate and no weight decay.

The paper trains its long kernels (and rung 8 its butterfly blocks) with their own, smaller
learning rate and no weight decay. A module marks such parameters with ``tag_params``;
``param_groups(model, lr, weight_decay)`` turns the tags into AdamW parameter groups. Both
``layers`` (rung 6) and ``learned`` (rung 8) use it, so it sits below both.
"""
from __future__ import annotations

import torch.nn as nn

from ._checks import check_float

__all__ = ["param_groups", "tag_params"]


def tag_params(module: nn.Module, names, *, lr: float | None = None, weight_decay: float = 0.0) -> None:
    """Mark parameters ``module.<name>`` for ``param_groups``: their own learning rate (None = the
    model's) and weight decay. The tag is kept twice: as ``p._optim`` on each parameter (easy to
    inspect) and in ``module._param_optim`` (which survives ``copy.deepcopy``, unlike the former)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f"names must be a list or tuple of parameter names such as ['raw_kernel'], "
                        f"got {type(names).__name__} {names!r}"[:160])
    if lr is not None:
        lr = check_float(lr, "lr", min=0.0, min_inclusive=False)
    weight_decay = check_float(weight_decay, "weight_decay", min=0.0)
    own = [n for n, _ in module.named_parameters(recurse=False)]
    found = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"names must hold strings, got {type(name).__name__} {name!r}")
        if not hasattr(module, name):
            raise ValueError(f"names must name parameters of module; {type(module).__name__} has no "
                             f"attribute {name!r} (its own parameters: {', '.join(own) or 'none'})")
        p = getattr(module, name)
        if not isinstance(p, nn.Parameter):
            raise TypeError(f"names must name parameters of module; {name!r} is {type(p).__name__}")
        found.append((name, p))
    table = module.__dict__.setdefault("_param_optim", {})
    for name, p in found:
        table[name] = p._optim = {"lr": lr, "weight_decay": weight_decay}


def param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: untagged parameters get (lr, weight_decay); each distinct tag
    ``p._optim = {"lr": ..., "weight_decay": ...}`` gets a group of its own (an lr of None in a
    tag means the model's lr). Use as ``torch.optim.AdamW(param_groups(model, 4e-3, 0.05))``.

    Frozen parameters (requires_grad False) are left out. Groups are returned untagged first,
    then in order of first appearance, each with a "name" key for logging.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lr = check_float(lr, "lr", min=0.0, min_inclusive=False)
    weight_decay = check_float(weight_decay, "weight_decay", min=0.0)
    plain = {"name": "default", "params": [], "lr": lr, "weight_decay": weight_decay}
    tags = {id(getattr(m, n)): t for m in model.modules()
            for n, t in getattr(m, "_param_optim", {}).items()}
    tagged: dict[tuple, dict] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        tag = tags.get(id(p), getattr(p, "_optim", None))
        if tag is None:
            plain["params"].append(p)
            continue
        g_lr = lr if tag.get("lr") is None else float(tag["lr"])
        g_wd = float(tag.get("weight_decay", 0.0))
        key = (g_lr, g_wd)
        if key not in tagged:
            tagged[key] = {"name": f"kernel(lr={g_lr:g}, wd={g_wd:g})", "params": [],
                           "lr": g_lr, "weight_decay": g_wd}
        tagged[key]["params"].append(p)
    return [g for g in [plain, *tagged.values()] if g["params"]]
