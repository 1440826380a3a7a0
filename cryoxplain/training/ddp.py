"""Data-parallel training inside :func:`cryoxplain.training.fit` (``torchrun … cryoxplain train``).

:class:`Replicas` is what the loop asks at each step.  With world size 1 (no launcher) it does
nothing: the module is the model, the batch is the batch, the loss is the loss — the loop is
exactly the single-process one.  Under ``torchrun`` (world size ``W`` > 1):

* the model is wrapped in ``DistributedDataParallel`` (parameters and buffers broadcast from
  rank 0 at the start, so every replica starts from rank 0's weights; gradients all-reduced);
* every rank draws the *same* global batch ``perm[s:s+batch_size]`` of the epoch's seeded
  permutation and the same crops/augmentations from the epoch generator (so the generator stream
  is the single-process one), then keeps only its contiguous shard of the batch
  (:func:`cryoxplain.distributed.shard_range`): the shards of the ranks are disjoint and cover the
  epoch once;
* the rank's mean loss is weighted by ``W·n_rank / n_batch`` before ``backward`` so that DDP's
  gradient average is the gradient of the global batch mean — the same step as one process on the
  same global batch, up to float summation order (exact for losses that are per-sample means,
  as MSE and cross-entropy are);
* a global remainder batch too small to give every rank ``task.min_batch`` samples is skipped
  (at world size 1 only one smaller than ``min_batch`` is);
* the per-step loss is all-reduced, so the divergence check and ``train_loss`` agree on all ranks;
  the task's summed statistics are all-reduced once per epoch.

Batch normalisation uses each rank's own shard for its batch statistics (as with any DDP run on
the CPU; ``SyncBatchNorm`` needs a GPU and is not used), so a BN model trained with ``W`` ranks
differs from one process by more than rounding; models without BN (the classifier, a
``depth=2`` cartesian net) agree to float tolerance.  See docs/scale-out.md.
"""
from __future__ import annotations

import torch

from .. import distributed as dist
from ..errors import ParameterError

__all__ = ["Replicas", "slice_batch"]


def slice_batch(batch, sl: slice, n: int):
    """The part ``sl`` (along the first axis) of every tensor of length ``n`` in ``batch``
    (nested tuples/lists/dicts; other values are kept)."""
    if torch.is_tensor(batch):
        return batch[sl] if batch.ndim and batch.shape[0] == n else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(slice_batch(b, sl, n) for b in batch)
    if isinstance(batch, dict):
        return {k: slice_batch(v, sl, n) for k, v in batch.items()}
    return batch


class Replicas:
    """The distributed side of one :func:`~cryoxplain.training.fit` run (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, dev: torch.device, batch_size: int, min_batch: int):
        self.ctx = dist.context()
        self.model = model
        self.module = model  # what the training step calls
        self.min_batch = int(min_batch)
        if not self.ctx.distributed:
            return
        if batch_size < self.ctx.world_size * self.min_batch:
            raise ParameterError(f"batch_size {batch_size} is too small for {self.ctx.world_size} processes: "
                                 f"every rank needs ≥ {self.min_batch} sample(s) of each batch "
                                 f"(batch_size ≥ {self.ctx.world_size * self.min_batch})")
        dist.init(dev, self.ctx)
        from torch.nn.parallel import DistributedDataParallel

        ids = [dev.index] if dev.type == "cuda" and dev.index is not None else None
        self.module = DistributedDataParallel(model, device_ids=ids)

    @property
    def distributed(self) -> bool:
        return self.ctx.distributed

    @property
    def main(self) -> bool:
        return self.ctx.main

    def skip(self, n_batch: int, n_train: int) -> bool:
        """Whether the loop skips a global batch of ``n_batch`` samples."""
        need = self.min_batch * (self.ctx.world_size if self.distributed else 1)
        return n_batch < need and n_train >= self.min_batch

    def local(self, batch, n_batch: int):
        """This rank's shard of a global batch of ``n_batch`` samples."""
        if not self.distributed:
            return batch
        r = dist.shard_range(n_batch, self.ctx.rank, self.ctx.world_size)
        return slice_batch(batch, slice(r.start, r.stop), n_batch)

    def step_loss(self, loss: torch.Tensor, n: int, n_batch: int) -> tuple[torch.Tensor, float]:
        """``(loss to back-propagate, global batch mean loss)`` for this rank's mean ``loss`` over
        its ``n`` of the ``n_batch`` samples."""
        if not self.distributed:
            return loss, float(loss.detach())
        tot = torch.tensor([float(loss.detach()) * n], dtype=torch.float64)
        dist.all_reduce_sum(tot)
        return loss * (self.ctx.world_size * n / n_batch), float(tot[0]) / n_batch

    def reduce_sums(self, sums: dict) -> dict:
        """The epoch's summed task statistics over all ranks (same keys on every rank)."""
        if not self.distributed:
            return sums
        keys = sorted(sums)
        keys = dist.broadcast_object(keys)  # rank 0's keys; every task reports the same ones
        t = torch.tensor([float(sums.get(k, 0.0)) for k in keys], dtype=torch.float64)
        dist.all_reduce_sum(t)
        return {k: float(v) for k, v in zip(keys, t.tolist())}

    def measured(self, measure, row: dict, t0: float) -> dict:
        """Validation and callbacks once, on rank 0 (the bare model), the row sent to every rank."""
        if not self.distributed:
            return measure(row, t0)
        row = measure(row, t0) if self.main else None
        return dist.broadcast_object(row)
