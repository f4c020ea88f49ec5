"""Models with a planted, provable violation of 1-Lipschitzness in ℓ∞ (for testing the search).

Each model carries `planted_lipschitz`: a proven lower bound on its exact ℓ∞ Lipschitz constant on
[0, 1]^D, and `planted_kind`. Proofs (g = a pure ℓ∞-dist net at p = ∞: for almost every input each
logit has gradient ±e_a, because each unit ‖h − w‖∞ + b has gradient ±e_argmax and mean shifts are
translations; so ‖∇g_k‖₁ = 1 a.e. and the local slope along sign(∇) is exactly the ℓ1 norm):
- "scale": f(x) = g(s·x): ‖∇f_k‖₁ = s a.e., so Lip(f) ≥ s.
- "gemm": Flatten → identity ℓ∞-dist layer (w_ii = −10, other |w_ij| ≤ 8, so for x ∈ [0, 1]^D unit i
  outputs exactly x_i + 10) → MeanShift → Linear W (every row has ℓ1 norm ≥ s, W invertible a.s.)
  → ℓ∞-dist layers → −(·): ∇f_k = ±W_a a.e., so Lip(f) ≥ min_a ‖W_a‖₁ ≥ s (a Gemm with ‖W‖∞ = s in
  the middle of a net; `nets` exports it).
- "finite_p": Flatten → identity layer → MeanShift(μ) → last layer at finite p with weights
  w_k = 10 − μ + u_k, u_k ∈ [0.3, 0.7]^D: f_k(x) = −‖x − u_k‖_p − b_k, whose ℓ1 gradient norm at
  x = u_k + 0.25·σ (σ ∈ {±1}^D, inside the domain) is D^{1/p}: Lip(f) ≥ D^{1/p} (an ℓp layer in a
  "p = ∞" model).
- "weights": a "convex" ensemble of copies of one net g with nonnegative weights summing to s > 1
  (fusion): f = s·g, Lip(f) ≥ s.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from torch import nn

from props._base import MAX_SEED, build, check_number_range
from props.floaterr import ETA, U_PRIME, register_error_rule

KINDS = ("scale", "gemm", "finite_p", "weights")


class InputScale(nn.Module):
    """y = s·x, an (s-Lipschitz) input scaling."""

    def __init__(self, s: float):
        super().__init__()
        self.s = float(s)

    def forward(self, x):
        return self.s * x

    def extra_repr(self) -> str:
        return f"s={self.s}"


def _scale_rule(m: InputScale, x, err):
    y = m(x)  # one rounding per element: |RN(s·x) − s·x| ≤ u'·|y|
    return y, abs(m.s) * err + U_PRIME * y.detach().reshape(len(y), -1).abs().amax(1).double() + ETA


register_error_rule(InputScale, _scale_rule)


def _pure_net(shape, depth, width, classes, seed, *, identity=True):
    return build("linf", shape, depth, width, classes, True, identity, seed)


def _identity_trunk_layer(model) -> None:
    """Clamp the first dist layer's off-identity weights to [−8, 8] (identity exact on [0, 1]^D)."""
    layer = model.trunk[1]
    with torch.no_grad():
        w = layer.weight
        n_out, n_in = w.shape
        keep = torch.zeros_like(w, dtype=torch.bool)
        keep[torch.arange(n_out), torch.arange(n_out) % n_in] = True
        w.copy_(torch.where(keep, torch.full_like(w, -10.0), w.clamp(-8.0, 8.0)))


def _tag(model, kind: str, lower: float, d: int):
    model.input_shape = (1, 1, d)
    model.planted_kind = kind
    model.planted_lipschitz = float(lower)
    return model.eval()


def planted_scale(d: int, depth: int, width: int, classes: int, s: float, seed: int):
    g = _pure_net((1, 1, d), depth, width, classes, seed, identity=False)
    f = nn.Sequential(InputScale(s), g)
    return _tag(f, "scale", s, d)


def planted_gemm(d: int, depth: int, classes: int, s: float, seed: int):
    from nets.models import set_p

    model = _pure_net((1, 1, d), depth + 1, d, classes, seed, identity=True)
    _identity_trunk_layer(model)
    gen = torch.Generator().manual_seed(seed + 1)
    w = torch.randn(d, d, generator=gen, dtype=torch.float64)
    w = (w / w.abs().sum(dim=1, keepdim=True) * s).float()
    lin = nn.Linear(d, d)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(torch.randn(d, generator=gen))
    trunk = list(model.trunk)
    model.trunk = nn.Sequential(*trunk[:3], lin, *trunk[3:])  # Flatten, identity, MeanShift, Linear, ...
    set_p(model, math.inf)
    lower = float(w.double().abs().sum(dim=1).min())
    return _tag(model, "gemm", lower, d)


def planted_finite_p(d: int, classes: int, p: float, seed: int):
    model = _pure_net((1, 1, d), 2, d, classes, seed, identity=True)
    _identity_trunk_layer(model)
    last = model.trunk[-1]
    mu = model.trunk[2].running_mean
    gen = torch.Generator().manual_seed(seed + 2)
    u = 0.3 + 0.4 * torch.rand(classes, d, generator=gen)
    with torch.no_grad():
        last.weight.copy_(10.0 - mu[None, :] + u)
    last.p = float(p)
    return _tag(model, "finite_p", d ** (1.0 / p), d)


def planted_weights(d: int, depth: int, width: int, classes: int, weights: list[float], seed: int):
    from nets.ensemble import ConvexEnsemble

    g = _pure_net((1, 1, d), depth, width, classes, seed, identity=False)
    ens = ConvexEnsemble([copy.deepcopy(g) for _ in weights], None, mode="fusion")
    ens.weights.copy_(torch.tensor(weights, dtype=torch.float32))
    return _tag(ens, "weights", math.fsum(float(a) for a in ens.weights), d)


def lipschitz_violating_nets(*, kinds=KINDS, min_excess: float = 0.1, max_excess: float = 1.0):
    """Tiny models (input (1, 1, D), D ∈ [2, 8]) whose ℓ∞ Lipschitz constant provably exceeds
    1 + min_excess (see the module docstring); `model.planted_lipschitz` is the proven lower bound.
    ``kinds``: a non-empty subset of KINDS ("finite_p" needs min_excess ≤ 1: D^(1/p) ≤ 2 for p ≥ 2)."""
    kinds = tuple(kinds) if isinstance(kinds, (tuple, list)) else kinds
    if not (isinstance(kinds, tuple) and kinds and set(kinds) <= set(KINDS)):
        raise InvalidArgument(f"kinds must be a non-empty list of {list(KINDS)}, got {kinds!r}")
    check_number_range("excess", min_excess, max_excess)
    if not min_excess > 0:
        raise InvalidArgument(f"min_excess must be > 0, got {min_excess!r}")
    if "finite_p" in kinds and min_excess > 1:
        raise InvalidArgument(f"kind finite_p needs min_excess <= 1 (it plants D^(1/p), D >= 4, p >= 2), "
                              f"got {min_excess!r}")
    return _lipschitz_violating_nets(kinds, min_excess, max_excess)


@st.composite
def _lipschitz_violating_nets(draw, kinds, min_excess, max_excess):
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, MAX_SEED))
    classes = draw(st.integers(2, 4))
    depth = draw(st.integers(1, 3))
    s = 1.0 + draw(st.floats(min_excess, max_excess))
    if kind == "scale":
        return planted_scale(draw(st.integers(2, 8)), depth, draw(st.integers(2, 8)), classes, s, seed)
    if kind == "gemm":
        return planted_gemm(draw(st.integers(2, 8)), depth, classes, s, seed)
    if kind == "finite_p":
        d = draw(st.integers(4, 8))
        p_max = math.log(d) / math.log(1.0 + min_excess)
        p = draw(st.sampled_from([q for q in (2.0, 3.0, 4.0, 6.0, 8.0, 12.0) if q <= p_max]))
        return planted_finite_p(d, classes, p, seed)
    n = draw(st.integers(1, 3))
    cuts = sorted(draw(st.lists(st.integers(0, 1 << 10), min_size=n - 1, max_size=n - 1)))
    edges = [0] + cuts + [1 << 10]
    weights = [s * (b - a) / (1 << 10) for a, b in zip(edges, edges[1:])]
    return planted_weights(draw(st.integers(2, 8)), depth, draw(st.integers(2, 8)), classes, weights, seed)


# ---------------------------------------------------------------- planted violations in ONNX files


def plant_onnx_input_scaling(src, dst, s: float) -> None:
    """Copy the ONNX model `src` to `dst` with the graph input multiplied by s first (Lip ≥ s·Lip)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    name = g.input[0].name
    scaled = name + "_scaled"
    for node in g.node:
        node.input[:] = [scaled if i == name else i for i in node.input]
    g.initializer.append(numpy_helper.from_array(np.array(s, np.float32), name + "_scale"))
    g.node.insert(0, helper.make_node("Mul", [name, name + "_scale"], [scaled], name="planted_scale"))
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def l1_layer_onnx(dst, weights: np.ndarray, opset: int = 17, batch="N") -> None:
    """An ONNX model of the p = 1 distance layer f_k(x) = ‖x − w_k‖₁ in standard ops (Unsqueeze, Sub,
    Abs, MatMul with ones), input [N, 1, 1, D]: D-Lipschitz in ℓ∞ (the ℓp layer's D^{1/p} at p = 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.asarray(weights, np.float32)
    k, d = w.shape
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.ones((d, 1), np.float32), "ones"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("Unsqueeze", ["flat", "axis1"], ["x3"]),
             helper.make_node("Sub", ["x3", "W"], ["diff"]),
             helper.make_node("Abs", ["diff"], ["absd"]),
             helper.make_node("MatMul", ["absd", "ones"], ["sum"]),
             helper.make_node("Flatten", ["sum"], ["logits"], axis=1)]
    graph = helper.make_graph(nodes, "l1_layer",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 1, d])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, k])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(dst))
