"""Rung 7 data: three sequence-classification tasks that ship with the course and run on a laptop.

* **Sequential digits** — scikit-learn's bundled 8x8 handwritten digits (1797 images, no
  download), upsampled to ``size`` x ``size`` (32x32 by default) and read pixel by pixel in raster
  order, so a model sees a sequence of L = size**2 = 1024 grey values and must name the digit at
  the end. ``permute=True`` reorders the pixels by one fixed permutation (the same for everybody),
  which destroys locality, like the permuted MNIST/CIFAR tasks of the long-sequence literature.
  The train/validation/test split is fixed by ``seed`` (default 0), independent of the seed that
  initialises a model, so runs with different model seeds see the same split.

* **Pathfinder-style** — our own seeded generator in the spirit of the Long Range Arena's
  Pathfinder task (Linsley et al. 2018; Tay et al. 2021). Each image holds two long curved
  *dashed* paths, a few short dashed distractors and two round markers. Label 1: both markers sit
  on the two ends of the same path; label 0: one marker on an end of each path. Both classes draw
  the same two paths, so only following a path from one marker tells them apart. It is an
  approximation, not LRA's data: LRA renders 32x32 to 256x256 images with a different, richer
  stroke model (anti-aliased dashes, paddles, curvature control, tuned difficulty levels); ours is
  a pixel-level imitation that generates 10k images in seconds. ``size`` 32 (L = 1024) or 64
  (L = 4096).

* **Noisy digits** (``noisy_digits``) — a 16x16 digit read as its first 256 steps, then Gaussian
  noise up to L: the label lives in a short stretch, so the distant taps of a kernel as long as
  the sequence can only fit noise — the regime of the paper's regularisation claim.

Each returns a :class:`SequenceDataset` (a ``torch.utils.data.Dataset`` of ``(x, y)`` pairs,
``x`` of shape (L, 1), float32, ``y`` an int64 class) and is deterministic for a given seed.
Generated data is cached on disk as one ``.pt`` file per setting, written atomically, under
``cache_dir`` (argument), else ``$LONGCONV_EDU_CACHE``, else ``~/.cache/longconv_edu`` — never
inside the repository unless you point it there.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_float, check_int

__all__ = ["SequenceDataset", "TASKS", "SPLITS", "default_cache_dir", "load_task", "noisy_digits",
           "atomic_write", "atomic_save", "write_json",
           "sequential_digits", "pathfinder", "render_pathfinder"]

SPLITS = ("train", "val", "test")
DATA_VERSION = 2            # bump when a generator changes, so stale cache files are not reused
PERMUTATION_SEED = 2302     # the one fixed pixel permutation of permuted digits (arXiv 2302.06646)


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
    if not isinstance(permute, bool):
        raise TypeError(f"permute must be a bool, got {type(permute).__name__} {permute!r}")
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
# Pathfinder-style
# ---------------------------------------------------------------------------------------------

def _walk(rng, size: float, length: float, step: float, turn: float, start=None, margin=2.0):
    """A smooth random curve: points every ``step`` pixels, heading changed by N(0, turn) per
    step, bouncing off the image border. Returns (n, 2) float coordinates (row, col)."""
    n = max(2, int(round(length / step)) + 1)
    lo, hi = margin, size - 1 - margin
    p = rng.uniform(lo, hi, size=2) if start is None else np.asarray(start, float)
    theta = rng.uniform(0, 2 * math.pi)
    pts = np.empty((n, 2))
    pts[0] = p
    for i in range(1, n):
        theta += rng.normal(0.0, turn)
        q = p + step * np.array([math.sin(theta), math.cos(theta)])
        if not lo <= q[0] <= hi:            # bounce off the top/bottom edge
            theta = -theta
        if not lo <= q[1] <= hi:            # bounce off the left/right edge
            theta = math.pi - theta
        p = np.clip(p + step * np.array([math.sin(theta), math.cos(theta)]), lo, hi)
        pts[i] = p
    return pts


def _draw_dashed(img, pts, dash: float, gap: float, value: float = 1.0) -> None:
    """Rasterise a polyline as dashes of ``dash`` pixels separated by ``gap`` pixels."""
    seg = np.diff(pts, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    arclen = np.concatenate([[0.0], np.cumsum(seglen)])
    s = np.arange(0.0, arclen[-1], 0.25)                 # sample the curve every 1/4 pixel
    s = s[(s % (dash + gap)) < dash]                     # keep the "on" parts of the dash pattern
    r = np.interp(s, arclen, pts[:, 0])
    c = np.interp(s, arclen, pts[:, 1])
    img[np.rint(r).astype(int), np.rint(c).astype(int)] = value


def _draw_marker(img, p, radius: float) -> None:
    size = img.shape[0]
    rr, cc = np.mgrid[0:size, 0:size]
    img[(rr - p[0]) ** 2 + (cc - p[1]) ** 2 <= radius ** 2] = 1.0


def render_pathfinder(rng: np.random.Generator, size: int = 32, label: int | None = None,
                      *, distractors: int | None = None) -> tuple[np.ndarray, int]:
    """One Pathfinder-style image (size, size) float32 in [0, 1] and its label (1 = connected).

    Two long dashed paths A and B, ``distractors`` short dashed curves, and two markers: on both
    ends of A (label 1) or on one end of A and one end of B (label 0). Lengths scale with size.
    """
    scale = size / 32
    label = int(rng.integers(2)) if label is None else int(label)
    n_distract = 2 * int(round(scale)) if distractors is None else distractors
    img = np.zeros((size, size), np.float32)
    walk = dict(step=1.0, turn=0.25, margin=2.0 * scale)
    path_a = _walk(rng, size, rng.uniform(20, 30) * scale, **walk)
    path_b = _walk(rng, size, rng.uniform(20, 30) * scale, **walk)
    for _ in range(n_distract):
        _draw_dashed(img, _walk(rng, size, rng.uniform(4, 8) * scale, **walk), 2.0 * scale,
                     1.5 * scale)
    for path in (path_a, path_b):
        _draw_dashed(img, path, 2.0 * scale, 1.5 * scale)
    ends = [path_a[0], path_a[-1]] if label == 1 else [path_a[int(rng.integers(2)) * -1],
                                                       path_b[int(rng.integers(2)) * -1]]
    for p in ends:
        _draw_marker(img, p, 1.0 * scale + 0.3)
    return img, label


def pathfinder(split: str = "train", *, seed: int = 0, size: int = 32, n_train: int = 4000,
               n_val: int = 500, n_test: int = 1000, cache_dir=None) -> SequenceDataset:
    """Pathfinder-style images (see the module docstring) read as sequences of size*size pixels.

    Image i of the generator comes from its own random stream ``default_rng([seed, i])``; the
    splits take images ``[0, n_train)``, then the next ``n_val``, then the next ``n_test``. Labels
    are balanced in expectation. x: (N, size*size, 1) float32 in [0, 1]; y: (N,) in {0, 1}.
    """
    split = check_choice(split, "split", SPLITS)
    seed = check_int(seed, "seed", min=0)
    size = check_choice(check_int(size, "size", min=1), "size", (32, 64))
    n_train = check_int(n_train, "n_train", min=1)
    n_val = check_int(n_val, "n_val", min=1)
    n_test = check_int(n_test, "n_test", min=1)
    name = f"pathfinder-s{size}-seed{seed}-n{n_train}-{n_val}-{n_test}"

    def build():
        total = n_train + n_val + n_test
        imgs = np.empty((total, size, size), np.float32)
        labels = np.empty(total, np.int64)
        for i in range(total):
            imgs[i], labels[i] = render_pathfinder(np.random.default_rng([seed, i]), size)
        x = torch.from_numpy(imgs).reshape(total, size * size, 1)
        y = torch.from_numpy(labels)
        cuts = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val),
                "test": slice(n_train + n_val, total)}
        return {s: {"x": x[c].clone(), "y": y[c].clone()} for s, c in cuts.items()}

    data = _cached(name, cache_dir, build)[split]
    return SequenceDataset(data["x"], data["y"], 2, f"pathfinder{size}/{split}",
                           {"task": "pathfinder", "size": size, "seed": seed})


# ---------------------------------------------------------------------------------------------
# a digit, then noise: the paper's regime (kernel as long as the sequence, little data)
# ---------------------------------------------------------------------------------------------

def noisy_digits(split: str = "train", *, seed: int = 0, length: int = 1024, size: int = 16,
                 noise: float = 0.5, n_val: int = 400, n_test: int = 400,
                 cache_dir=None) -> SequenceDataset:
    """A digit upsampled to ``size`` x ``size`` and read as its size**2 pixels, then noise to ``length``.

    Positions 0 .. size**2 - 1 hold the digit (bilinear upsampling of the 8x8 original, as in
    ``sequential_digits``); the remaining ``length - size**2`` positions hold Gaussian noise with
    the digit pixels' mean and ``noise`` times their standard deviation, drawn afresh for every
    example (stream ``default_rng([seed, i])`` for image i). Everything the label depends on sits
    in the first size**2 steps, so a kernel needs no more than size**2 taps; the taps of a
    length-L kernel that reach further back than the digit can only fit noise, and the longer L,
    the more of them there are. The split is fixed by ``seed``: ``n_test`` test images, ``n_val``
    validation images, the remaining 1797 - n_val - n_test (997 by default) train (take fewer with
    ``SequenceDataset.subset``). x: (N, length, 1) float32; y: (N,) digit 0..9.

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
    name = f"noisy-digits-L{length}-s{size}-n{noise:g}-seed{seed}-v{n_val}-t{n_test}"

    def build():
        img, y = _digit_images(size)
        n_pix = size * size
        pix = img.reshape(len(img), n_pix)
        mean, std = float(pix.mean()), float(pix.std())
        x = torch.empty(len(y), length, 1)
        x[:, :n_pix, 0] = pix
        for i in range(len(y)):
            z = np.random.default_rng([seed, i]).normal(mean, noise * std, length - n_pix)
            x[i, n_pix:, 0] = torch.from_numpy(z.astype(np.float32))
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
                 "train": order[n_test + n_val:]}
        return {s: {"x": x[i].contiguous(), "y": y[i].contiguous()} for s, i in parts.items()}

    data = _cached(name, cache_dir, build)[split]
    return SequenceDataset(data["x"], data["y"], 10, f"noisy-digits{length}/{split}",
                           {"task": "noisy-digits", "length": length, "size": size,
                            "noise": noise, "seed": seed})


TASKS = {
    "digits": sequential_digits,
    "noisy-digits": noisy_digits,
    "pathfinder": pathfinder,
}


def load_task(task: str, split: str = "train", **kwargs) -> SequenceDataset:
    """``TASKS[task](split, **kwargs)``; an unknown task name lists the valid ones."""
    task = check_choice(task, "task", TASKS)
    return TASKS[task](split, **kwargs)
