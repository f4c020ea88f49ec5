"""The GPU path's device and determinism logic, checked on the CPU.

- DDP maps local rank r to cuda:r: a rank without its own visible device is a one-line ConfigError,
  never a crash inside NCCL.
- Training runs in torch's deterministic mode (restored afterwards).
- The reference p = ∞ backward sums in a fixed order on every device: on CUDA a one-hot block sum
  (no scatter_add_ atomics); here it is compared with the CPU's sequential scatter_add_.
"""

from __future__ import annotations

import pytest
import torch

from nets import ops
from nets import train as T
from nets.presets import ConfigError, apply_overrides, get_preset


@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


@pytest.mark.parametrize("local, ok", [(0, True), (3, True), (4, False), (7, False)])
def test_ddp_rank_needs_its_own_device(four_gpus, local, ok):
    dist = T.DistInfo(rank=local, world=8, local_rank=local)
    if ok:
        assert T.resolve_device("cuda", dist) == torch.device("cuda", local)
        assert T.resolve_device("auto", dist) == torch.device("cuda", local)
    else:
        with pytest.raises(ConfigError, match=r"rank .*only 4 CUDA device\(s\).*--device cpu"):
            T.resolve_device("cuda", dist)


def test_explicit_device_index_is_checked(four_gpus):
    assert T.resolve_device("cuda:3") == torch.device("cuda", 3)
    with pytest.raises(ConfigError, match="only 4 CUDA"):
        T.resolve_device("cuda:4")
    assert T.resolve_device("cpu", T.DistInfo(1, 8, 5)) == torch.device("cpu")  # CPU ranks: any count


def test_training_runs_in_deterministic_mode(monkeypatch):
    seen = []
    real = T.train_member

    def spy(*a, **k):
        seen.append(torch.are_deterministic_algorithms_enabled())
        return real(*a, **k)

    monkeypatch.setattr(T, "train_member", spy)
    before = torch.are_deterministic_algorithms_enabled()
    cfg = apply_overrides(get_preset("digits-small"), train_limit=64, test_limit=32, epochs=1, width=8,
                          depth=2, batch_size=32, threads=1)
    T.run_training(cfg, None)
    assert seen == [True]
    assert torch.are_deterministic_algorithms_enabled() == before  # restored


@pytest.mark.parametrize("chunk", [None, 7, 200])
def test_onehot_index_sum_matches_scatter_and_repeats(chunk):
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 11, (17, 40), generator=gen)
    v = torch.randn(17, 40, generator=gen)
    want = torch.zeros(17, 11).scatter_add_(1, idx, v)
    got = ops.onehot_index_sum(idx, v, 11, chunk)
    assert torch.allclose(got, want, rtol=0, atol=1e-5)
    assert torch.equal(got, ops.onehot_index_sum(idx, v, 11, chunk))


def test_linf_backward_uses_the_ordered_sum_off_the_cpu(monkeypatch):
    """On a non-CPU device the p = ∞ backward goes through onehot_index_sum (never scatter_add_)."""
    calls = []
    real = ops.onehot_index_sum
    monkeypatch.setattr(ops, "onehot_index_sum", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(5, 9, device="meta", requires_grad=True)
    w = torch.randn(4, 9, device="meta", requires_grad=True)
    gx, gw = torch.autograd.grad(ops.reference_lp_dist(x, w, float("inf")).sum(), (x, w))
    assert len(calls) == 2 and gx.shape == x.shape and gw.shape == w.shape
