"""Distributed training helpers of the :class:`~napari_medtrans.training.trainer.Trainer`.

* :class:`_Dist`: rank, world size and local rank of this process (from ``torchrun``'s ``RANK``/``WORLD_SIZE``/
  ``LOCAL_RANK``), and a barrier that is a no-op outside distributed training;
* :func:`_dist_from_env`: starts the process group (NCCL on CUDA, gloo on the CPU) when it is not running yet;
* :func:`_resolve_device`: the device of this process (the GPU of its local rank in distributed training);
* :class:`_ResumableSampler`: a DistributedSampler that can start part-way into an epoch (exact resume).
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


@dataclasses.dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _dist_from_env(device_type: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    d = _Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        d.owns_group = True
    return d


def _resolve_device(device: str | torch.device, dist: _Dist) -> torch.device:
    """The device of this process (:func:`~napari_medtrans.core.device.resolve_device`; in distributed training
    the GPU of its local rank)."""
    from ..core.device import resolve_device

    return resolve_device(device, local_rank=dist.local_rank if dist.enabled else None)


class _ResumableSampler(Sampler):
    """A DistributedSampler (shuffled per epoch from the seed) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, dist: _Dist, seed: int):
        self.base = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                       seed=seed, drop_last=True)
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self):
        return itertools.islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)
