"""Torch-side data for training: in-memory splits, the paper's augmentation, sharded batching.

Built on :func:`common.datasets.load_arrays` (one reader for training and certification).
Everything is tensors in memory (the data sets here are ≤ 50k small images), so no DataLoader,
no worker processes and no torchvision are needed.

Guarantees:
- :func:`augment` keeps the input range and shape: random crop after zero padding (value 0, as in
  torchvision's RandomCrop(padding=k)) and optional horizontal flip, drawn per sample from the
  given generator — the same generator state gives the same batch.
- :func:`iterate_batches` under a world of R ranks: every rank draws the SAME permutation (seeded
  by (seed, epoch)) and takes the disjoint shard perm[rank::R], cut to an equal length on every
  rank (like DistributedSampler with drop_last), so each sample is seen at most once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from common.datasets import DATASETS, canonical_name, load_arrays
from common.errors import DataError

__all__ = ["Augment", "AUGMENT", "DataSplits", "load_splits", "augment", "iterate_batches",
           "seeded_generator"]


@dataclass(frozen=True)
class Augment:
    """Paper augmentation: random crop with zero padding `pad`, horizontal flip if `hflip`."""

    pad: int = 0
    hflip: bool = False


AUGMENT: dict[str, Augment] = {
    "mnist": Augment(pad=1),
    "fashion-mnist": Augment(pad=1),
    "cifar10": Augment(pad=4, hflip=True),
    "digits": Augment(pad=1),
}


@dataclass
class DataSplits:
    """Training tensors, the held-out slice for per-epoch evaluation, and the test split."""

    name: str
    train_x: Tensor
    train_y: Tensor
    holdout_x: Tensor
    holdout_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def to(self, device) -> "DataSplits":
        """Copy every tensor to `device` (data sets here fit in memory on any GPU)."""
        kw = {k: getattr(self, k).to(device) for k in
              ("train_x", "train_y", "holdout_x", "holdout_y", "test_x", "test_y")}
        return DataSplits(name=self.name, **kw)


def load_splits(name: str, data_dir=None, *, holdout: int = 0, train_limit: int | None = None,
                test_limit: int | None = None) -> DataSplits:
    """Load `name`'s train and test splits as tensors.

    `holdout`: the LAST `holdout` training samples are withheld from training (deterministic) and
    returned as the held-out slice. `train_limit`/`test_limit`: keep only the first N (for tests
    and quick runs; applied to train before the hold-out is cut).
    """
    canon = canonical_name(name)
    if canon is None:
        raise DataError(f"unknown data set {name!r}: expected one of {', '.join(sorted(DATASETS))}")
    xtr, ytr = load_arrays(canon, "train", data_dir)
    xte, yte = load_arrays(canon, "test", data_dir)
    if train_limit is not None:
        xtr, ytr = xtr[:train_limit], ytr[:train_limit]
    if test_limit is not None:
        xte, yte = xte[:test_limit], yte[:test_limit]
    if holdout < 0 or holdout >= len(xtr):
        raise DataError(f"holdout must be in [0, {len(xtr) - 1}] for {canon}, got {holdout}")
    n = len(xtr) - holdout
    t = torch.from_numpy
    return DataSplits(canon, t(xtr[:n].copy()), t(ytr[:n].copy()), t(xtr[n:].copy()),
                      t(ytr[n:].copy()), t(xte), t(yte))


def seeded_generator(*keys: int, device="cpu") -> torch.Generator:
    """A torch.Generator seeded from integer keys (e.g. (seed, epoch, rank)), order-sensitive."""
    h = 0x9E3779B97F4A7C15
    for k in keys:
        h = (h * 0x100000001B3 ^ (int(k) & 0xFFFFFFFFFFFF)) & 0x7FFFFFFFFFFFFFFF
    g = torch.Generator(device=device)
    g.manual_seed(h)
    return g


def augment(x: Tensor, aug: Augment, gen: torch.Generator) -> Tensor:
    """Randomly crop (after zero padding by aug.pad) and flip a batch x [B, C, H, W]."""
    if aug.pad <= 0 and not aug.hflip:
        return x
    b, c, h, w = x.shape
    dev = x.device
    if aug.pad > 0:
        k = aug.pad
        padded = torch.nn.functional.pad(x, (k, k, k, k))
        oy = torch.randint(0, 2 * k + 1, (b,), generator=gen, device=gen.device).to(dev)
        ox = torch.randint(0, 2 * k + 1, (b,), generator=gen, device=gen.device).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # [B, H, 1]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # [B, 1, W]
        bidx = torch.arange(b, device=dev)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2).contiguous()
    if aug.hflip:
        flip = (torch.rand(b, generator=gen, device=gen.device) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def shard_indices(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1,
                  device="cpu") -> Tensor:
    """This rank's disjoint shard of the epoch's shared permutation (equal length on all ranks)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad rank/world: {rank}/{world}")
    perm = torch.randperm(n, generator=seeded_generator(seed, epoch))
    per_rank = n // world
    return perm[rank::world][:per_rank].to(device)


def iterate_batches(x: Tensor, y: Tensor, batch_size: int, *, epoch: int, seed: int,
                    aug: Augment | None = None, rank: int = 0, world: int = 1,
                    drop_last: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
    """Shuffled (augmented) batches of this rank's shard for one epoch.

    Order is a function of (seed, epoch); augmentation of (seed, epoch, rank). `drop_last` drops a
    final partial batch (batch statistics of MeanShift want full batches) unless it is the only one.
    """
    idx = shard_indices(len(x), epoch, seed, rank, world, device=x.device)
    gen = seeded_generator(seed, epoch, rank, 1)
    n = len(idx)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for s in range(0, stop, batch_size):
        sel = idx[s:s + batch_size]
        xb = x[sel]
        if aug is not None:
            xb = augment(xb, aug, gen)
        yield xb, y[sel]


def num_batches(n: int, batch_size: int, world: int = 1, drop_last: bool = True) -> int:
    """How many batches :func:`iterate_batches` yields per epoch on each rank."""
    per_rank = n // world
    if drop_last and per_rank >= batch_size:
        return per_rank // batch_size
    return -(-per_rank // batch_size)
