"""Registry parity (issue 13, must-show 4): every op of the registry (verify/ops/_op_list.OPS) is
loadable, certifiable and attackable through the ONE front-end.

For each (domain, op_type) in OPS, random small models whose first op is that op (the soundness
fuzzer's generator, tests/fuzz_graphs.py, which has one entry per registry op) are loaded with
``load_model``; for each model that loads:
- certifiable: ``VerifiedModel.interval`` on a small box around a point x0 holds onnxruntime's
  logits at x0 (or refuses with ModelError = unknown);
- attackable: the attack's torch evaluation (verify.attack.torch_graph.TorchGraph, built on the
  same IR, each op's ``torch_forward``) equals ``VerifiedModel.forward`` bit for bit or lies in the
  point box ``interval(x0, x0)`` (which holds every float32 evaluation order), and agrees with
  onnxruntime; the gradient reaches the input and is finite where the logits are.
An op added to OPS without a ``torch_forward`` fails ``test_every_op_has_a_torch_forward``; one
without a generator fails here (and in test_fuzz_soundness).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from fuzz_graphs import GENERATORS, graphs
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from verify.attack.torch_graph import TorchGraph
from common.errors import ModelError
from verify.front.model import load_model
from verify.ops._op_list import OPS
from verify.ops.base import NodeSpec, Op, TorchContext
from common.runtime import ort_logits, ort_session

_AVOID = frozenset({"bad_constants", "cast_out_of_range", "float32_folding"})
_SETTINGS = dict(deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("key", sorted(OPS), ids=lambda k: "::".join(filter(None, k)))
def test_every_op_has_a_torch_forward(key):
    cls = OPS[key]
    assert cls.torch_forward is not Op.torch_forward, f"{key}: no torch_forward (the attack cannot run it)"


def test_an_op_without_torch_forward_is_named_in_one_line(tmp_path):
    class NoTorch(Op):
        op_type = "NoTorch"

    op = NoTorch(NodeSpec("n1", "NoTorch", "", ["x"], ["y"]), {})
    with pytest.raises(ModelError, match="n1.*NoTorch") as e:
        op.torch_forward(TorchContext(), torch.zeros(1))
    assert "\n" not in str(e.value)
    graph = type("G", (), {"nodes": [op], "constants": {}})
    with pytest.raises(ModelError, match="no torch evaluation of op.s. NoTorch"):
        TorchGraph(type("M", (), {"graph": graph})())


def _in_box(v, lo, hi) -> np.ndarray:
    v64, lo64, hi64 = (np.asarray(a, np.float64) for a in (v, lo, hi))
    return (lo64 <= v64) & (v64 <= hi64) | (np.isnan(v64) & (lo64 == -np.inf) & (hi64 == np.inf))


def _parity(fz, tmp_path, rng) -> bool:
    """Checks one generated model; False when the verifier refuses it (nothing to compare)."""
    path = tmp_path / "m.onnx"
    onnx.save(fz.model, str(path))
    try:
        m = load_model(path)
    except ModelError:
        return False
    # a small box around an ordinary point (the generated box may be extreme)
    c = rng.uniform(-1, 1, fz.lo.shape).astype(np.float32)
    lo, hi = (c - np.float32(0.01)).astype(np.float32), (c + np.float32(0.01)).astype(np.float32)
    ref = ort_logits(ort_session(path), c)
    try:
        blo, bhi = m.interval(lo, hi)
        assert _in_box(ref, blo, bhi).all(), "onnxruntime's logits outside the certified box"
        plo, phi = m.interval(c, c)
    except ModelError:
        plo = phi = None  # unknown (e.g. an overflow): allowed
    tg = TorchGraph(m)
    xt = torch.from_numpy(c).requires_grad_(True)
    z = tg(xt)
    zn = z.detach().numpy()
    want = m.forward(c)
    assert zn.shape == want.shape and zn.dtype == np.float32
    if plo is not None:  # the point box holds every float32 evaluation order: the tolerance
        assert _in_box(zn, plo, phi).all(), f"torch {zn} outside the point box [{plo}, {phi}]"
        assert _in_box(ref, plo, phi).all() and _in_box(want, plo, phi).all()
    elif np.isfinite(want).all() and np.abs(want).max(initial=0) < 1e6:
        np.testing.assert_allclose(zn, want, rtol=1e-5, atol=1e-6 * (1 + np.abs(want).max(initial=0)))
        np.testing.assert_allclose(zn, ref, rtol=1e-4, atol=1e-5 * (1 + np.abs(ref).max(initial=0)))
    finite = np.isfinite(zn)
    # gradients flow to the input, unless a cast to an integer type (piecewise constant) cuts them
    cut = any(op.op_type == "Cast" and int(op.attr("to")) != onnx.TensorProto.FLOAT for op in m.graph.nodes)
    assert z.requires_grad or cut, "no gradient reaches the input"
    if not z.requires_grad:
        return True
    w = torch.from_numpy(np.where(finite, 1.0, 0.0).astype(np.float32))
    (g,) = torch.autograd.grad((torch.where(torch.from_numpy(finite), z, 0) * w).sum(), xt, allow_unused=True)
    assert g is not None and g.shape == xt.shape
    big = max((float(np.abs(v).max(initial=0)) for v in m.graph.constants.values()
               if np.issubdtype(np.asarray(v).dtype, np.floating)), default=0.0)
    if finite.all() and big < 1e6 and np.abs(want).max(initial=0) < 1e6:
        assert torch.isfinite(g).all()
    return True


@pytest.mark.parametrize("key", sorted(OPS), ids=lambda k: "::".join(filter(None, k)))
def test_every_op_is_loadable_certifiable_attackable(tmp_path_factory, key):
    op = key[1]
    assert op in GENERATORS, f"{key}: add a generator to tests/fuzz_graphs.py (the registry parity test uses it)"
    loaded = []

    @settings(max_examples=8, **_SETTINGS)
    @seed(13)
    @given(data=st.data())
    def run(data):
        fz = data.draw(graphs(avoid=_AVOID, first=op, max_ops=1))
        assert op in fz.ops
        rng = np.random.default_rng(len(loaded))
        loaded.append(_parity(fz, tmp_path_factory.mktemp("parity"), rng))

    run()
    assert any(loaded), f"{key}: none of the generated models loads, so nothing was compared"
