"""Rung 7 data: two sequence-classification tasks that ship with the course and run on a laptop.

* **Sequential digits** — scikit-learn's bundled 8x8 handwritten digits (1797 images, no
  download), upsampled to ``size`` x ``size`` (32x32 by default) and read pixel by pixel in raster
  order, so a model sees a sequence of L = size**2 = 1024 grey values and must name the digit at
  the end. ``permute=True`` reorders the pixels by one fixed permutation (the same for everybody),
  which destroys locality, like the permuted MNIST/CIFAR tasks of the long-sequence literature.
  The train/validation/test split is fixed by ``seed`` (default 0), independent of the seed that
  initialises a model, so runs with different model seeds see the same split.

* **Noisy digits** (``noisy_digits``) — a 16x16 digit read as 256 steps, padded with Gaussian
  noise to L, the digit first (``digit_at="start"``) or last (``"end"``): the label lives in a
  short stretch. With the digit last, the taps of a causal kernel as long as the sequence that
  reach further back than 256 steps see only noise, for every output — the regime of the
  paper's regularisation claim; with the digit first they carry the digit to later outputs.

Each returns a :class:`SequenceDataset` (a ``torch.utils.data.Dataset`` of ``(x, y)`` pairs,
``x`` of shape (L, 1), float32, ``y`` an int64 class) and is deterministic for a given seed.
Generated data is cached on disk as one ``.pt`` file per setting, written atomically, under
``cache_dir`` (argument), else ``$LONGCONV_EDU_CACHE``, else ``~/.cache/longconv_edu`` — never
inside the repository unless you point it there.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_bool, check_choice, check_float, check_int

__all__ = ["SequenceDataset", "TASKS", "SPLITS", "DIGIT_PLACES", "default_cache_dir", "load_task", "noisy_digits",
           "atomic_write", "atomic_save", "write_json",
           "sequential_digits"]

SPLITS = ("train", "val", "test")
DATA_VERSION = 2            # bump when a generator changes, so stale cache files are not reused
PERMUTATION_SEED = 2302     # the one fixed pixel permutation of permuted digits (arXiv 2302.06646)
DIGIT_PLACES = ("start", "end")   # noisy_digits: where the digit sits in the sequence


class SequenceDataset(Dataset):
    """Sequences ``x`` (N, L, C) float32 with labels ``y`` (N,) int64; item i is ``(x[i], y[i])``.

    Attributes: ``seq_len`` L, ``d_input`` C, ``n_classes``, ``name`` and ``meta`` (how it was made).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, name: str = "",
                 meta: dict | None = None):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError(f"x and y must be torch tensors, got {type(x).__name__} and "
                            f"{type(y).__name__}")
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x must be (N, L, C) and y (N,) with the same N, got x {tuple(x.shape)}"
                             f" and y {tuple(y.shape)}")
        n_classes = check_int(n_classes, "n_classes", min=2)
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ValueError("y must hold integer class labels, got non-integer values")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise ValueError(f"y must hold labels in [0, n_classes) = [0, {n_classes}), got labels "
                             f"from {int(y.min())} to {int(y.max())}")
        self.x, self.y = x.float().contiguous(), y.long().contiguous()
        self.n_classes = n_classes
        self.name, self.meta = name, dict(meta or {})

    @property
    def seq_len(self) -> int:
        return self.x.shape[1]

    @property
    def d_input(self) -> int:
        return self.x.shape[2]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def subset(self, n: int) -> SequenceDataset:
        """The first ``n`` examples (a smaller, still deterministic dataset for quick runs)."""
        n = check_int(n, "n", min=1, max=len(self))
        return SequenceDataset(self.x[:n], self.y[:n], self.n_classes, self.name,
                               {**self.meta, "subset": n})

    def __repr__(self) -> str:
        return (f"SequenceDataset({self.name!r}, N={len(self)}, L={self.seq_len}, "
                f"C={self.d_input}, classes={self.n_classes})")


# ---------------------------------------------------------------------------------------------
# the on-disk cache
# ---------------------------------------------------------------------------------------------

def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where generated data (and experiment runs) live: the argument, else ``$LONGCONV_EDU_CACHE``,
    else ``~/.cache/longconv_edu``."""
    if cache_dir is None:
        cache_dir = os.environ.get("LONGCONV_EDU_CACHE") or Path.home() / ".cache" / "longconv_edu"
    return Path(cache_dir).expanduser()


def atomic_write(path: Path, write, *, binary: bool = True) -> None:
    """Call ``write(f)`` on a temporary file in the same folder, then ``os.replace`` it onto
    ``path``: a reader sees the old file or the new one, never half of one, even if the writer is
    killed midway (the temporary file is removed if ``write`` fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through ``atomic_write``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def write_json(obj, path: Path) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(Path(path), lambda f: json.dump(obj, f, indent=1), binary=False)


def _cached(name: str, cache_dir, build) -> dict:
    """Load ``name`` from the cache, or ``build()`` it and store it. A damaged cache file is
    rebuilt (it is only a cache) with a warning."""
    path = default_cache_dir(cache_dir) / f"{name}-v{DATA_VERSION}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable cache file is rebuilt
            warnings.warn(f"data cache file {path} is unreadable ({type(e).__name__}); rebuilding it",
                          stacklevel=3)
    data = build()
    try:
        atomic_save(data, path)
    except OSError as e:  # a read-only disk still gets its data, only uncached
        warnings.warn(f"could not write data cache {path}: {e}", stacklevel=3)
    return data


def _split_sizes(n: int, val_frac: float, test_frac: float) -> tuple[int, int, int]:
    n_test, n_val = round(n * test_frac), round(n * val_frac)
    return n - n_val - n_test, n_val, n_test


# ---------------------------------------------------------------------------------------------
# sequential digits
# ---------------------------------------------------------------------------------------------

def _digit_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as (N, size, size) float32 in [0, 1] (bilinear upsampling) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]     # (N, 1, 8, 8)
    if size != 8:
        img = torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear",
                                              align_corners=False)
    return img[:, 0], torch.from_numpy(d.target.astype(np.int64))


def sequential_digits(split: str = "train", *, seed: int = 0, size: int = 32,
                      permute: bool = False, val_frac: float = 0.1, test_frac: float = 0.2,
                      cache_dir=None) -> SequenceDataset:
    """scikit-learn's 8x8 digits upsampled to ``size`` x ``size`` and read as a sequence.

    Returns the ``split`` ("train", "val" or "test") of a fixed split drawn with ``seed``:
    ``test_frac`` (20%) test, ``val_frac`` (10%) validation, the rest (1258 images) train.
    x: (N, size*size, 1) float32 in [0, 1]; y: (N,) digit 0..9. ``size`` 8 keeps the originals.
    """
    split = check_choice(split, "split", SPLITS)
    seed = check_int(seed, "seed", min=0)
    size = check_int(size, "size", min=8, max=128)
    val_frac = check_float(val_frac, "val_frac", min=0.0, max=0.5)
    test_frac = check_float(test_frac, "test_frac", min=0.0, max=0.5)
    permute = check_bool(permute, "permute")
    name = f"digits-s{size}-p{int(permute)}-seed{seed}-v{val_frac:g}-t{test_frac:g}"

    def build():
        img, y = _digit_images(size)
        x = img.reshape(len(img), size * size, 1)
        if permute:
            g = torch.Generator().manual_seed(PERMUTATION_SEED)
            x = x[:, torch.randperm(size * size, generator=g)]
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_train, n_val, _ = _split_sizes(len(y), val_frac, test_frac)
        parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val],
                 "test": order[n_train + n_val:]}
        return {s: {"x": x[i].contiguous(), "y": y[i].contiguous()} for s, i in parts.items()}

    data = _cached(name, cache_dir, build)[split]
    return SequenceDataset(data["x"], data["y"], 10, f"digits/{split}",
                           {"task": "digits", "size": size, "permute": permute, "seed": seed})


# ---------------------------------------------------------------------------------------------
# a digit, then noise: the paper's regime (kernel as long as the sequence, little data)
# ---------------------------------------------------------------------------------------------

def noisy_digits(split: str = "train", *, seed: int = 0, length: int = 1024, size: int = 16,
                 noise: float = 0.5, n_val: int = 400, n_test: int = 400, digit_at: str = "start",
                 cache_dir=None) -> SequenceDataset:
    """A digit upsampled to ``size`` x ``size`` and read as its size**2 pixels, padded with noise to ``length``.

    The digit (bilinear upsampling of the 8x8 original, as in ``sequential_digits``) fills the
    first size**2 positions (``digit_at="start"``: digit, then noise) or the last ones
    (``digit_at="end"``: noise, then digit); the other ``length - size**2`` positions hold
    Gaussian noise with the digit pixels' mean and ``noise`` times their standard deviation, drawn
    afresh for every example (stream ``default_rng([seed, i])`` for image i, the same draws in
    both placements). The split is fixed by ``seed``: ``n_test`` test images, ``n_val``
    validation images, the remaining 1797 - n_val - n_test (997 by default) train (take fewer with
    ``SequenceDataset.subset``). x: (N, length, 1) float32; y: (N,) digit 0..9.

    Where the digit sits decides what a causal kernel's distant taps can see. Output t of a
    causal convolution reads input t - j through tap j. With the digit at the *end*, an input
    t - j with j >= size**2 always lies before the digit, so every tap beyond size**2 reads
    noise for every output: those taps can only fit noise, and the longer L, the more of them
    there are (the regime of the paper's regularisation claim). With the digit at the *start*,
    tap j carries the digit to outputs t in [j, j + size**2): every tap, the most distant too,
    sees the digit at some output, and the classifier averages all outputs.

    Why 16x16 and noise 0.5: the classifier averages its features over all L positions, so a digit
    of only 64 pixels (the original 8x8) is diluted 16-fold at L = 1024 and in pilots no model
    left chance within 20 epochs; with 256 digit steps and half-strength noise the SSM and the
    unregularised long convolution both learn it (``tests/test_data.py`` checks the SSM).
    """
    split = check_choice(split, "split", SPLITS)
    seed = check_int(seed, "seed", min=0)
    size = check_int(size, "size", min=8, max=64)
    length = check_int(length, "length", min=size * size)
    noise = check_float(noise, "noise", min=0.0)
    n_val = check_int(n_val, "n_val", min=1, max=800)
    n_test = check_int(n_test, "n_test", min=1, max=800)
    digit_at = check_choice(digit_at, "digit_at", DIGIT_PLACES)
    name = (f"noisy-digits-L{length}-s{size}-n{noise:g}-seed{seed}-v{n_val}-t{n_test}"
            + ("" if digit_at == "start" else f"-{digit_at}"))

    def build():
        img, y = _digit_images(size)
        n_pix = size * size
        pix = img.reshape(len(img), n_pix)
        mean, std = float(pix.mean()), float(pix.std())
        digit, pad = (slice(0, n_pix), slice(n_pix, length)) if digit_at == "start" else \
            (slice(length - n_pix, length), slice(0, length - n_pix))
        x = torch.empty(len(y), length, 1)
        x[:, digit, 0] = pix
        for i in range(len(y)):
            z = np.random.default_rng([seed, i]).normal(mean, noise * std, length - n_pix)
            x[i, pad, 0] = torch.from_numpy(z.astype(np.float32))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                 "train": order[n_test + n_val:]}
        return {s: {"x": x[i].contiguous(), "y": y[i].contiguous()} for s, i in parts.items()}

    data = _cached(name, cache_dir, build)[split]
    return SequenceDataset(data["x"], data["y"], 10, f"noisy-digits{length}/{split}",
                           {"task": "noisy-digits", "length": length, "size": size,
                            "noise": noise, "seed": seed, "digit_at": digit_at})


TASKS = {
    "digits": sequential_digits,
    "noisy-digits": noisy_digits,
}


def load_task(task: str, split: str = "train", **kwargs) -> SequenceDataset:
    """``TASKS[task](split, **kwargs)``; an unknown task name lists the valid ones."""
    task = check_choice(task, "task", TASKS)
    return TASKS[task](split, **kwargs)
