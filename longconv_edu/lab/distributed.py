"""Rung 7 distribution: the few process-group helpers training needs (all no-ops in one process).

How N processes take exactly the steps of one, for any dataset size:

* every rank draws the same permutation of the training set for epoch e
  (``epoch_order(n, seed, e)``, the order a 1-process run uses too);
* global batch b is ``order[b*B:(b+1)*B]`` (the last one may be short), and rank r takes its
  ``r::N`` share (``rank_share``): nothing is padded or duplicated, shares differ by at most one
  example, and a rank may get none of a short last batch;
* each rank scales its summed loss by ``N / |global batch|`` (``share_loss``), so DDP's average of
  the N gradients is the gradient of the global batch's mean loss: the 1-process gradient.

``torch.utils.data.DistributedSampler`` instead pads the epoch with repeated examples until it
divides by N, so an N-process run weights those examples twice and drifts from the 1-process run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

__all__ = ["Dist", "setup", "all_sum", "rng_states", "epoch_order", "rank_share", "share_loss",
           "barrier", "all_gather"]


@dataclass
class Dist:
    """Where this process stands: its rank, the number of processes, its device."""
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False           # this process created the group (and destroys it)

    @property
    def on(self) -> bool:
        return self.world > 1


def setup() -> Dist:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
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
    return Dist(rank, world, device, owns)


def teardown(d: Dist, *, finished: bool = False) -> None:
    """Leave the process group this process created. After a finished run every rank first waits
    at a barrier: rank 0 writes the metrics and checkpoint after the last collective, and a rank
    that destroyed its group and exited meanwhile was seen to abort in gloo's shutdown
    ("terminate called without an active exception", about 1 run in 30 of tests/test_ddp.py).
    After an error there is no barrier (a rank that died would leave the others waiting)."""
    if d.owns_group:
        import torch.distributed as dist

        if finished:
            dist.barrier()
        dist.destroy_process_group()


def all_sum(values: list[float], d: Dist) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (float64)."""
    if not d.on:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj, d: Dist) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not d.on:
        return [obj]
    import torch.distributed as dist

    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if d.on:
        import torch.distributed as dist

        dist.barrier()


def rng_states(d: Dist) -> list:
    """Every rank's torch RNG state (and CUDA's), gathered on all ranks."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return all_gather(state, d)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of n training examples in ``epoch``: a function of (seed, epoch) only,
    the same on every rank (and the order ``DistributedSampler(num_replicas=1)`` would give)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


def rank_share(batch: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's examples of a global batch: ``batch[rank::world]`` (possibly empty)."""
    return batch[d.rank::d.world]


def share_loss(loss_sum: torch.Tensor, global_batch: int, d: Dist) -> torch.Tensor:
    """The loss this rank back-propagates: its summed loss times world / global_batch, so the
    average DDP takes over ranks equals the global batch's mean loss."""
    return loss_sum * (d.world / global_batch)
