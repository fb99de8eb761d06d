"""Rung 7 models: one small sequence classifier, three interchangeable sequence mixers.

    x (B, L, C) -> standardise -> embedding Linear(C, H) -> n_layers x Block -> LayerNorm
      -> mean over L -> Linear(H, classes)

    Block:  x + Dropout(Mixer(LayerNorm(x)))            (pre-norm residual block)

The mixer is what the experiment compares, everything else is shared:

* ``"longconv"``     a ``LongConv`` layer (rung 6) whose kernel is a free parameter of length L,
                     regularised by ``reg``: "none", "squash", "smooth" or "squash+smooth".
* ``"ssm"``          the same layer with an S4D-style state-space kernel (a sum of damped complex
                     exponentials, smooth by construction): the paper's strong baseline.
* ``"transformer"``  multi-head self-attention (``torch.nn.functional.scaled_dot_product_attention``)
                     followed by a two-layer GELU MLP, with learned position embeddings; O(L^2).

Standardising the input (zero mean, unit variance over the training set) matters more than it
looks: with raw pixels in [0, 1] every model here sits on a plateau for the first ~100 steps.
Internally the residual stream is (B, L, H) so LayerNorm normalises channels; the long-conv layers
take the library's (B, H, L) layout, so their wrapper transposes in and out.
``ModelConfig`` holds every setting as plain values: it is stored in checkpoints (and compared on
resume) and in the metrics JSON.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._checks import check_bool, check_choice, check_float, check_int
from ..layers import DEFAULT_LAM

__all__ = ["MODELS", "REGULARIZERS", "ModelConfig", "SequenceClassifier", "build_model",
           "count_parameters", "long_conv_layers"]

MODELS = ("longconv", "ssm", "transformer")

#: What each ``reg`` name switches on: (use Squash, use Smooth). Kernel dropout is a separate knob.
REGULARIZERS = {
    "none": (False, False),
    "squash": (True, False),
    "smooth": (False, True),
    "squash+smooth": (True, True),
}


@dataclass
class ModelConfig:
    """Every setting of a ``SequenceClassifier`` (plain values, JSON-able)."""
    d_input: int = 1
    n_classes: int = 10
    l_max: int = 1024
    model: str = "longconv"
    reg: str = "none"
    d_model: int = 32                  # channels H (the course trains on CPUs: small)
    n_layers: int = 2
    dropout: float = 0.1
    kernel_dropout: float = 0.0
    lam: float = DEFAULT_LAM           # Squash threshold when reg uses squash (layers.DEFAULT_LAM)
    smooth_width: int = 7              # Smooth window when reg uses smooth (reference code: 7)
    n_heads: int = 2                   # transformer only
    ssm_state_dim: int = 64            # ssm only
    backend: str = "auto"              # long_conv backend of the conv layers (auto: fastest for the device)
    kernel_lr: float = 1e-3            # the kernels' own learning rate (their weight decay is 0)
    seed: int = 0                      # initialises every layer (the same on every DDP rank)
    learned_butterfly: bool = False    # rung 8: learned.learned_long_conv layers, blocks start at the DFT
    input_mean: float = 0.0            # inputs are standardised, (x - mean) / std, before the
    input_std: float = 1.0             # embedding (the trainer sets these from the training set)

    def __post_init__(self):
        check_int(self.d_input, "d_input", min=1)
        check_int(self.n_classes, "n_classes", min=2)
        check_int(self.l_max, "l_max", min=1)
        check_choice(self.model, "model", MODELS)
        check_choice(self.reg, "reg", REGULARIZERS)
        check_int(self.d_model, "d_model", min=1)
        check_int(self.n_layers, "n_layers", min=1)
        check_float(self.dropout, "dropout", min=0.0, max=1.0, max_inclusive=False)
        check_float(self.kernel_dropout, "kernel_dropout", min=0.0, max=1.0, max_inclusive=False)
        check_float(self.lam, "lam", min=0.0)
        check_int(self.smooth_width, "smooth_width", min=1, odd=True)
        check_int(self.n_heads, "n_heads", min=1)
        check_int(self.ssm_state_dim, "ssm_state_dim", min=2)
        check_float(self.kernel_lr, "kernel_lr", min=0.0, min_inclusive=False)
        check_int(self.seed, "seed", min=0)
        check_bool(self.learned_butterfly, "learned_butterfly")
        check_float(self.input_mean, "input_mean")
        check_float(self.input_std, "input_std", min=0.0, min_inclusive=False)
        if self.model == "transformer" and self.d_model % self.n_heads:
            raise ValueError(f"d_model must be divisible by n_heads for the transformer, got "
                             f"d_model={self.d_model}, n_heads={self.n_heads}")
        if self.model != "longconv" and self.reg != "none":
            raise ValueError(f"reg={self.reg!r} applies to model 'longconv' only (the {self.model!r} "
                             f"model has no free kernel to regularise); use reg='none'")
        from ..dispatch import backends
        check_choice(self.backend, "backend", backends())

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class ChannelsFirst(nn.Module):
    """Runs a (B, H, L) layer on the (B, L, H) residual stream."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x.transpose(1, 2)).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, L, H) with torch's fused scaled_dot_product_attention."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x):
        B, L, H = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, H // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, H))


class Block(nn.Module):
    """Pre-norm residual block: x + Dropout(mixer(LayerNorm(x))), on (B, L, H)."""

    def __init__(self, d_model: int, mixer: nn.Module, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return x + self.drop(self.mixer(self.norm(x)))


def _mlp(d_model: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(2 * d_model, d_model))


def _conv_layer(cfg: ModelConfig, index: int) -> nn.Module:
    from ..layers import LongConv
    from ..learned import learned_long_conv

    use_squash, use_smooth = REGULARIZERS[cfg.reg]
    common = dict(dropout=cfg.dropout, backend=cfg.backend, kernel_lr=cfg.kernel_lr,
                  seed=cfg.seed * 1000 + index)
    layer = learned_long_conv if cfg.learned_butterfly else LongConv
    if cfg.model == "ssm":
        return layer(cfg.d_model, cfg.l_max, lam=0.0, smooth_width=None, kernel_dropout=0.0,
                        kernel_source="ssm", state_dim=cfg.ssm_state_dim, **common)
    return layer(cfg.d_model, cfg.l_max, lam=cfg.lam if use_squash else 0.0,
                    smooth_width=cfg.smooth_width if use_smooth else None,
                    kernel_dropout=cfg.kernel_dropout, **common)


class SequenceClassifier(nn.Module):
    """Embedding, ``n_layers`` residual blocks of the chosen mixer, mean pooling, linear head.

    forward(x): x (B, L, C) float with L <= l_max -> logits (B, n_classes).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        # every weight is drawn from cfg.seed, without touching the caller's random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self._build(cfg)

    def _build(self, cfg: ModelConfig) -> None:
        self.embed = nn.Linear(cfg.d_input, cfg.d_model)
        blocks = []
        for i in range(cfg.n_layers):
            if cfg.model == "transformer":
                blocks.append(Block(cfg.d_model, SelfAttention(cfg.d_model, cfg.n_heads, cfg.dropout),
                                    cfg.dropout))
                blocks.append(Block(cfg.d_model, _mlp(cfg.d_model, cfg.dropout), cfg.dropout))
            else:
                blocks.append(Block(cfg.d_model, ChannelsFirst(_conv_layer(cfg, i)), cfg.dropout))
        self.blocks = nn.ModuleList(blocks)
        if cfg.model == "transformer":
            self.pos = nn.Parameter(torch.randn(cfg.l_max, cfg.d_model) * 0.02)
        else:
            self.register_parameter("pos", None)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.cfg.d_input:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, L, C={self.cfg.d_input}), got {got}")
        if x.shape[1] > self.cfg.l_max:
            raise ValueError(f"x has length L={x.shape[1]} but the model was built for "
                             f"l_max={self.cfg.l_max}")
        if not x.is_floating_point():
            raise TypeError(f"x must hold floats (the model's own dtype is "
                            f"{self.embed.weight.dtype}), got {x.dtype}")
        x = x.to(self.embed.weight.dtype)       # float64 data into a float32 model, or .double()
        h = self.embed((x - self.cfg.input_mean) / self.cfg.input_std)
        if self.pos is not None:
            h = h + self.pos[: x.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h).mean(dim=1))


def build_model(cfg: ModelConfig | None = None, **kwargs) -> SequenceClassifier:
    """``SequenceClassifier(ModelConfig(**kwargs))`` (or of the given config)."""
    if cfg is None:
        return SequenceClassifier(ModelConfig(**kwargs))
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig or None (settings go in as keywords: "
                        f"build_model(d_model=64)), got {type(cfg).__name__}")
    if kwargs:
        raise TypeError(f"build_model takes a ModelConfig or keyword settings, not both; got cfg and "
                        f"{sorted(kwargs)} (use dataclasses.replace(cfg, ...))")
    return SequenceClassifier(cfg)


def _check_module(model, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in _check_module(model).parameters() if p.requires_grad)


def long_conv_layers(model: nn.Module) -> list:
    """The model's LongConv layers, in order (empty for the transformer)."""
    from ..layers import LongConv

    return [m for m in _check_module(model).modules() if isinstance(m, LongConv)]
