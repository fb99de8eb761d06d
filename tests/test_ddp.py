"""Distributed training: ``torchrun --nproc_per_node=N`` on CPU (gloo) with a tiny configuration.

The oracle is the 1-process run: rank r takes the r::N share of every global batch and scales its
summed loss by N / |batch| (``lab.distributed``), so DDP's gradient average is the gradient of the
global batch's mean loss and N processes take the 1-process steps, for any dataset size. The
runs differ only by float rounding in the gradient all-reduce (tolerance 1e-4 relative after the
run; measured: step losses within 1e-6, weights within 1e-5 of their largest entry). Dropout is
off so no run draws random numbers. The size tested (37 examples, global batch 6) divides by
neither 2 nor 3, and its last batch (1 example) leaves some ranks with nothing: the case where
``DistributedSampler``'s padding with duplicates made a 4-process run drift 2.8 % from one process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longconv_edu.lab import checkpoints, distributed, train

REPO = Path(__file__).resolve().parents[1]
DDP_TINY = dict(task="digits", size=8, n_train=37, d_model=8, n_layers=1, batch_size=6, epochs=3,
                lr=0.03, kernel_lr=0.03, warmup=0.0, dropout=0.0)
STEPS = 7 * 3                                   # ceil(37 / 6) steps per epoch, 3 epochs


def _torchrun(n: int, out: Path, cache: Path, *extra: str, kill_at: int = 0):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "longconv_edu", "train", "--out", str(out), "--cache-dir", str(cache),
            "--no-progress", "--threads", "1", *extra]
    for k, v in DDP_TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("LONGCONV_EDU_KILL_AT_STEP", None)
    if kill_at:
        env["LONGCONV_EDU_KILL_AT_STEP"] = str(kill_at)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 1-process run (in this process) and the 2- and 3-process runs (torchrun)."""
    root = tmp_path_factory.mktemp("ddp")
    cache = root / "cache"
    cfg = train.RunConfig.from_flat(**DDP_TINY)
    train.load_data(cfg, cache)                               # build the data once, up front
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = train.fit(cfg, root / "p1", progress=False, cache_dir=cache, log=lambda s: None)
    finally:
        torch.set_num_threads(before)
    for n in (2, 3):
        proc = _torchrun(n, root / f"p{n}", cache)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root, cache, one


@pytest.mark.parametrize("n", [2, 3])
def test_n_processes_equal_one_on_a_size_that_does_not_divide(runs, n):
    root, _, one = runs
    met = json.loads((root / f"p{n}" / "metrics.json").read_text())
    assert met["world_size"] == n and met["finished"] and met["n_train"] == 37
    digests = met["param_digest_per_rank"]
    assert len(digests) == n and len(set(digests)) == 1        # identical weights on every rank
    assert met["steps_per_epoch"] == one["steps_per_epoch"] == 7
    loss = met["history"]["step_loss"]
    assert len(loss) == STEPS
    assert loss == pytest.approx(one["history"]["step_loss"], rel=1e-4, abs=1e-6)
    assert met["history"]["train_acc"] == pytest.approx(one["history"]["train_acc"], abs=1e-9)
    wn = checkpoints.load_checkpoint(root / f"p{n}" / "checkpoint.pt")["model"]
    w1 = checkpoints.load_checkpoint(root / "p1" / "checkpoint.pt")["model"]
    for k in w1:
        torch.testing.assert_close(wn[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)


def test_killed_ddp_run_resumes_to_the_uninterrupted_one(runs):
    root, cache, _ = runs
    out = root / "killed"
    killed = _torchrun(2, out, cache, kill_at=10)              # mid epoch 2: epoch 1 is saved
    assert killed.returncode != 0
    assert checkpoints.load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    resumed = _torchrun(2, out, cache, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    met = json.loads((out / "metrics.json").read_text())
    ref = json.loads((root / "p2" / "metrics.json").read_text())
    assert met["history"]["step_loss"] == ref["history"]["step_loss"]       # the same steps
    a = checkpoints.load_checkpoint(out / "checkpoint.pt")["model"]
    b = checkpoints.load_checkpoint(root / "p2" / "checkpoint.pt")["model"]
    for k in b:
        assert torch.equal(a[k], b[k]), k


def test_rank_shares_cover_each_batch_once():
    batch = torch.arange(10, 17)                               # a short last batch of 7
    for world in (1, 2, 3, 8):
        shares = [distributed.rank_share(batch, distributed.Dist(rank=r, world=world))
                  for r in range(world)]
        assert sorted(torch.cat(shares).tolist()) == batch.tolist()
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    # the loss each rank back-propagates averages (over ranks) to the batch's mean loss
    losses = torch.rand(7)
    shares = [distributed.share_loss(losses[r::3].sum(), 7, distributed.Dist(rank=r, world=3))
              for r in range(3)]
    assert float(sum(shares) / 3) == pytest.approx(float(losses.mean()), rel=1e-6)
