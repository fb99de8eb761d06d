"""Distributed training: ``torchrun --nproc_per_node=2`` on CPU (gloo) with a tiny configuration.

Checks that both ranks finish with bit-identical weights, that the loss falls, and, as an
independent oracle, that the 2-process run follows a 1-process run with the same global batch:
rank r's batch b is examples perm[r::2] of the epoch's permutation, so both ranks together see
exactly the single-process batch b, and DDP's gradient average equals the full-batch gradient.
They differ only by float rounding in the gradient all-reduce (tolerance 1e-4 relative after
30 AdamW steps; measured: step losses within 2e-7, weights within 5e-6 of their largest entry). Dropout is off so both runs draw no random numbers.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from longconv_edu.lab import train

REPO = Path(__file__).resolve().parents[1]
DDP_TINY = dict(task="digits", size=8, n_train=96, d_model=8, n_layers=1, batch_size=16, epochs=5,
                lr=0.03, kernel_lr=0.03, warmup=0.0, dropout=0.0)


def test_two_cpu_processes_agree_with_each_other_and_with_one(tmp_path):
    cache = tmp_path / "cache"
    train.load_data(train.RunConfig(**DDP_TINY), cache)          # build the data once, up front
    out2 = tmp_path / "ddp"
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "longconv_edu", "train", "--out", str(out2), "--cache-dir", str(cache),
            "--no-progress", "--threads", "1"]
    for k, v in DDP_TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    met = json.loads((out2 / "metrics.json").read_text())
    assert met["world_size"] == 2 and met["finished"]
    digests = met["param_digest_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]       # identical weights on both ranks
    steps = met["steps_per_epoch"]
    loss = met["history"]["step_loss"]
    assert len(loss) == steps * DDP_TINY["epochs"] == 30
    first, last = sum(loss[:steps]) / steps, sum(loss[-steps:]) / steps
    assert last < 0.95 * first

    torch.set_num_threads(1)
    one = train.fit(train.RunConfig(**DDP_TINY), tmp_path / "one", progress=False, cache_dir=cache,
                    log=lambda s: None)
    assert one["steps_per_epoch"] == steps
    assert loss == pytest.approx(one["history"]["step_loss"], rel=1e-4, abs=1e-6)
    w2 = train.load_checkpoint(out2 / "checkpoint.pt")["model"]
    w1 = train.load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)


def test_batch_must_split_evenly_over_ranks(tmp_path, monkeypatch):
    # a single process pretending to be one of 3 would need batch_size % 3 == 0; checked before
    # any process group is joined, so no other process is needed to see the error
    cfg = train.RunConfig(**{**DDP_TINY, "batch_size": 16})
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        train._fit(cfg, tmp_path, train._Dist(rank=0, world=3), resume=False, progress=False,
                   cache_dir=tmp_path, log=print, tqdm=None)
