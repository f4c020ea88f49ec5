"""A sample's CROWN bound must not depend on the other samples of its batch: `check` re-proves
records in batches of its own size (and `auto` certifies only a subset with CROWN), so a bound that
did would make check reject valid certificates ("margin_lower exceeds the re-computed bound", or a
near-zero proof that does not re-prove). Found: the intermediate-box tightening refined the union of
the batch's unstable coordinates, so a sample's boxes (and bound) changed with its neighbours."""

from __future__ import annotations

import numpy as np

from certify_helpers import build_model
from verify.bounds import margins
from verify.bounds.spec import margin_lower
from verify.front.model import load_model


def _mlp(path):
    """A 3-hidden-layer ReLU MLP with many unstable neurons at eps 0.05: (rng, onnx path)."""
    rng = np.random.default_rng(0)
    dims = [8, 40, 40, 40, 4]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [("gemm", rng.normal(0, 1.5 / np.sqrt(a), (b, a)).astype(np.float32),
                    rng.normal(0, 0.1, b).astype(np.float32)), ("relu",)]
    return rng, build_model(layers[:-1], [8], path)


def test_a_samples_bound_does_not_depend_on_its_batch(tmp_path):
    rng, path = _mlp(tmp_path / "m.onnx")
    m = load_model(path)
    x = rng.random((6, 8)).astype(np.float32)
    y = np.zeros(6, np.int64)
    lo, hi = margins.input_box(x, 0.05, (0.0, 1.0))
    batch = margin_lower(m, lo, hi, y)
    alone = np.array([margin_lower(m, lo[i:i + 1], hi[i:i + 1], y[i:i + 1])[0] for i in range(6)])
    assert np.all(np.abs(alone - batch) <= 1e-9 * (1 + np.abs(alone)))


def test_one_overflowing_sample_leaves_its_neighbours_bounds_alone(tmp_path):
    """A sample whose boxes overflow (weights ~1e37) has no bound (NaN); it must not turn the bound
    of the other samples of its batch into NaN (found: one ModelError made the whole chunk NaN)."""
    rng = np.random.default_rng(0)
    big = np.float32(3e37)
    layers = [("gemm", rng.normal(size=(6, 4)).astype(np.float32) * big, np.zeros(6, np.float32)), ("relu",),
              ("gemm", rng.normal(size=(6, 6)).astype(np.float32) * big, np.zeros(6, np.float32)), ("relu",),
              ("gemm", rng.normal(size=(3, 6)).astype(np.float32), np.zeros(3, np.float32))]
    m = load_model(build_model(layers, [4], tmp_path / "ov.onnx"))
    x = np.array([[1e-37, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    lo, hi = x - np.float32(1e-38), x + np.float32(1e-38)
    y = np.zeros(2, np.int64)
    alone = margin_lower(m, lo[:1], hi[:1], y[:1])
    assert np.isfinite(alone[0])
    for steps in (0, 3):
        both = margin_lower(m, lo, hi, y, alpha_steps=steps)
        assert np.isnan(both[1]) and both[0] >= alone[0]


def test_check_reproves_a_crown_run_cut_into_other_batches(tmp_path):
    """End to end: certify --method crown with one batch of all samples, check with batches of 1:
    every record's margin_lower must re-prove."""
    from verify.certify.check import run_check
    from verify.certify.run import run_certify

    rng, path = _mlp(tmp_path / "m.onnx")
    m = load_model(path)
    x = rng.random((12, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.argmax(m.forward(x), 1))
    out = tmp_path / "c.jsonl"
    run_certify(path, tmp_path / "d.npz", eps=0.05, out=out, method="crown", batch_size=12)
    assert run_check(out, path, tmp_path / "d.npz", batch_size=1)["ok"]
