"""Shared helpers of the ops' ``torch_forward`` (the attack's differentiable evaluation).

Shape ops reuse their numpy ``forward`` so each op has one reading of its attributes: a reshape-like
op takes its output shape from ``forward`` run on a zero-strided dummy of the input's shape
(:func:`reshaped`), an op that picks elements (Slice, Gather) runs ``forward`` on the array of
element indices and gathers those elements (:func:`gathered`); both keep the gradient.
"""

from __future__ import annotations

from functools import reduce

import numpy as np
import torch

__all__ = ["as_numpy", "as_tensor", "binary", "f32t", "fold_variadic", "gathered", "numpy_forward", "reshaped",
           "same_kind_t", "unary"]


def as_numpy(t) -> np.ndarray | None:
    """A torch tensor (or None, or an array) as a numpy array, detached."""
    if t is None or isinstance(t, np.ndarray):
        return t
    return t.detach().cpu().numpy()


def as_tensor(a) -> torch.Tensor:
    """A numpy value as a torch tensor: floats as float32, integers as int64, bools as bool."""
    a = np.asarray(a)
    if a.dtype == np.bool_:
        return torch.from_numpy(a.copy())
    if a.dtype.kind == "f":
        return torch.from_numpy(a.astype(np.float32))
    return torch.from_numpy(a.astype(np.int64))


def is_int_t(t: torch.Tensor) -> bool:
    return not torch.is_floating_point(t)


def f32t(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float32 else t.to(torch.float32)


def same_kind_t(xs) -> list[torch.Tensor]:
    """All integer tensors stay as they are; otherwise all become float32 (as ``same_kind``)."""
    return list(xs) if all(is_int_t(x) for x in xs) else [f32t(x) for x in xs]


def numpy_forward(op, *xs) -> torch.Tensor:
    """``op.forward`` on the values of ``xs`` as a tensor (no gradient: integer shape arithmetic,
    constants, casts to integers)."""
    return as_tensor(op.forward(*[as_numpy(x) for x in xs]))


def unary(op, fn, x: torch.Tensor) -> torch.Tensor:
    """A unary elementwise op: ``op.forward`` on an integer tensor, else ``fn`` on float32 values."""
    return numpy_forward(op, x) if is_int_t(x) else fn(f32t(x))


def binary(op, fn, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A binary elementwise op: ``op.forward`` (exact int64) on two integer tensors, else ``fn`` on
    their float32 values."""
    if is_int_t(a) and is_int_t(b):
        return numpy_forward(op, a, b)
    return fn(f32t(a), f32t(b))


def fold_variadic(fn, xs) -> torch.Tensor:
    return reduce(fn, same_kind_t(xs))


def reshaped(op, x: torch.Tensor, *rest) -> torch.Tensor:
    """``x`` reshaped to the shape ``op.forward`` gives an input of x's shape (no copy of data)."""
    dummy = np.broadcast_to(np.zeros((), np.bool_), tuple(x.shape))
    return x.reshape(op.forward(dummy, *[as_numpy(r) for r in rest]).shape)


def gathered(op, x: torch.Tensor, *rest) -> torch.Tensor:
    """The elements of ``x`` that ``op.forward`` picks, as ``op.forward`` arranges them."""
    idx = np.arange(x.numel(), dtype=np.int64).reshape(tuple(x.shape))
    pick = np.array(op.forward(idx, *[as_numpy(r) for r in rest]), np.int64)  # a fresh copy: no negative strides
    return x.reshape(-1)[torch.from_numpy(pick)]
