"""Shared fixtures: tiny model configs of every architecture (fast to build and run on CPU)."""

from __future__ import annotations

import os

import pytest
import torch

# Without CUDA, Triton's interpreter runs the real Triton kernels on CPU tensors
# (tests/test_kernels_triton.py). triton 3.9 reads TRITON_INTERPRET when `triton.language` is imported
# (its library functions are decorated then) and when each kernel is decorated, so it must be set
# before anything imports triton: here. CUDA machines keep the compiled kernels (pytest -m gpu).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from nets.models import ModelConfig

# The test machines have 2 cores that other processes share: one intra-op thread is faster for the
# small tensors tests use (two threads measured 10-700x slower under load) and makes timings of the
# whole suite predictable. Tests that exercise threading set it themselves.
torch.set_num_threads(1)

TINY = {
    "linf": dict(arch="linf", input_shape=(1, 8, 8), depth=3, width=16, num_classes=10),
    "linf-mlp": dict(arch="linf-mlp", input_shape=(1, 8, 8), depth=2, width=16, hidden=8, num_classes=10),
    "conv-linf-mlp": dict(arch="conv-linf-mlp", input_shape=(1, 8, 8), depth=1, width=16, hidden=8,
                          num_classes=10, conv_channels=(4, 8), conv_strides=(1, 2)),
}


def _tiny(arch: str) -> ModelConfig:
    return ModelConfig(**TINY[arch])


@pytest.fixture(scope="session")
def tiny_config():
    """Factory: tiny_config(arch) -> a small ModelConfig on 8×8×1 inputs (the digits shape), 10 classes."""
    return _tiny


@pytest.fixture(params=sorted(TINY))
def tiny_cfg(request) -> ModelConfig:
    """Parametrised over every architecture: a tiny ModelConfig."""
    return _tiny(request.param)


@pytest.fixture(scope="module")
def ext():
    """The compiled C++ kernel module; skips (with the build's reason) where it cannot be built."""
    from nets.kernels import _build

    mod = _build.load_cpu_extension()
    if mod is None:
        pytest.skip(f"C++ kernels unavailable here: {_build.build_status()[1]}")
    return mod
