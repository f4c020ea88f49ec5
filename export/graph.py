"""Build the ONNX graph of a nets/ model directly with onnx.helper (no torch.onnx tracing).

Guarantees: every node is either a standard ONNX op or `linf::LinfDist` / `linf::LinfDistConv`
(common.linf_spec); nn.MaxPool2d / nn.AvgPool2d become MaxPool / AveragePool, the residual ℓ∞ neuron
c·x + (1 − c)·‖x − w‖∞ (+ b) becomes Mul(x, c) + Mul(LinfDist(x, W), 1 − c) (+ B) with c and 1 − c
exact float32 constants (so the static Lipschitz analysis bounds it by c + (1 − c) = 1); weights are copied as float32 initializers, unchanged, except the mean-shift
fold: a `MeanShift` right after an ℓ∞-dist layer becomes that layer's bias, B = b − μ computed in
float32 (exactly −μ when the layer has no bias, the case for every nets/ model). Any other module
raises ModelError naming it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper as h
from onnx import numpy_helper as nh
from torch import nn

from common import linf_spec
from common.errors import ModelError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _np(t) -> np.ndarray:
    a = t.detach().cpu().numpy()
    if not np.issubdtype(a.dtype, np.floating):
        raise ModelError(f"expected a floating-point tensor, got {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ModelError("the model has non-finite weights (NaN or inf); refusing to export")
    return a


class GraphBuilder:
    """Collects nodes and initializers with unique names; tracks which linf ops are used."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.linf_ops: set[str] = set()
        self._names: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def name(self, base: str) -> str:
        """A fresh value/node name derived from ``base``."""
        cand, i = base, 1
        while cand in self._names:
            cand, i = f"{base}_{i}", i + 1
        self._names.add(cand)
        return cand

    def init(self, base: str, arr: np.ndarray) -> str:
        """Add a float32 initializer; returns its name."""
        n = self.name(base)
        self.inits.append(nh.from_array(np.ascontiguousarray(arr, dtype=np.float32), n))
        return n

    def init_i64(self, base: str, values) -> str:
        n = self.name(base)
        self.inits.append(nh.from_array(np.asarray(values, dtype=np.int64), n))
        return n

    def node(self, op: str, inputs: list[str], prefix: str, *, out: str | None = None,
             domain: str = "", **attrs) -> str:
        """Append a node; returns its (single) output name."""
        out = out or self.name(f"{prefix}/{op}")
        if domain == linf_spec.DOMAIN:
            self.linf_ops.add(op)
        self.nodes.append(h.make_node(op, inputs, [out], name=self.name(f"{prefix}/{op}#node"),
                                      domain=domain, **attrs))
        return out


def _layer_kind(mod: nn.Module) -> str:
    # imported lazily: the layer classes live in nets/ (export may import nets, verify may not)
    from nets.layers import LinfDistConv2d, LinfDistLinear, MeanShift, ResidualLinfLinear

    table = [
        (LinfDistLinear, "dist"), (LinfDistConv2d, "distconv"), (MeanShift, "meanshift"),
        (ResidualLinfLinear, "residual"), (nn.MaxPool2d, "maxpool"), (nn.AvgPool2d, "avgpool"),
        (nn.Flatten, "flatten"), (nn.Linear, "linear"), (nn.Tanh, "tanh"), (nn.ReLU, "relu"),
        (nn.Identity, "identity"),
    ]
    for cls, kind in table:
        if type(mod) is cls:
            return kind
    raise ModelError(f"cannot export module {type(mod).__name__} ({mod!r:.80}); supported: "
                     "LinfDistLinear, LinfDistConv2d, ResidualLinfLinear, MeanShift, MaxPool2d, AvgPool2d, "
                     "Flatten, Linear, Tanh, ReLU, Identity")


def _check_p_inf(mod: nn.Module, where: str) -> None:
    p = float(getattr(mod, "p", math.inf))
    if p != math.inf:
        raise ModelError(f"{where}: ℓ∞-dist layer has p = {p:g}; export needs p = ∞ (set_p(model, math.inf))")


def _dist_params(mod: nn.Module, shift: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(W, B) of a dist layer with a following mean shift folded into B = b − μ (float32)."""
    w = _np(mod.weight)
    b = _np(mod.bias) if mod.bias is not None else None
    if shift is not None:
        b = (-shift).astype(np.float32) if b is None else (b - shift).astype(np.float32)
    return w, b


def emit_sequential(g: GraphBuilder, seq: nn.Module, x: str, prefix: str, rank: int) -> tuple[str, int]:
    """Emit the modules of an nn.Sequential (eval-mode semantics) applied to ``x`` of rank ``rank``.

    Returns the output value name and its rank.
    """
    mods = list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]
    i = 0
    while i < len(mods):
        mod, where = mods[i], f"{prefix}.{i}"
        kind = _layer_kind(mod)
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        fold = kind in ("dist", "distconv", "residual") and nxt is not None and _layer_kind(nxt) == "meanshift"
        shift = _np(nxt.running_mean) if fold else None
        if kind in ("dist", "distconv"):
            _check_p_inf(mod, where)
            w, b = _dist_params(mod, shift)
            ins = [x, g.init(f"{where}.weight", w)] + ([g.init(f"{where}.bias", b)] if b is not None else [])
            if kind == "dist":
                if rank != 2:
                    raise ModelError(f"{where}: LinfDistLinear needs a rank-2 input (add Flatten)")
                x = g.node(linf_spec.LINF_DIST, ins, where, domain=linf_spec.DOMAIN)
            else:
                if rank != 4:
                    raise ModelError(f"{where}: LinfDistConv2d needs a rank-4 input")
                x = _emit_distconv(g, mod, ins, where)
        elif kind == "residual":
            _check_p_inf(mod, where)
            if rank != 2:
                raise ModelError(f"{where}: ResidualLinfLinear needs a rank-2 input (add Flatten)")
            x = _emit_residual(g, mod, x, shift, where)
        elif kind in ("maxpool", "avgpool"):
            if rank != 4:
                raise ModelError(f"{where}: pooling needs a rank-4 input")
            x = _emit_pool(g, mod, x, kind, where)
        elif kind == "meanshift":  # not after a dist layer: an explicit Sub of a constant
            mu = _np(mod.running_mean)
            shape = (1, -1) + (1,) * (rank - 2)
            x = g.node("Sub", [x, g.init(f"{where}.running_mean", mu.reshape(shape))], where)
        elif kind == "flatten":
            if mod.start_dim != 1 or mod.end_dim != -1:
                raise ModelError(f"{where}: only Flatten(start_dim=1, end_dim=-1) is exportable")
            x, rank = g.node("Flatten", [x], where, axis=1), 2
        elif kind == "linear":
            ins = [x, g.init(f"{where}.weight", _np(mod.weight))]
            if mod.bias is not None:
                ins.append(g.init(f"{where}.bias", _np(mod.bias)))
            if rank != 2:
                raise ModelError(f"{where}: Linear needs a rank-2 input (add Flatten)")
            x = g.node("Gemm", ins, where, transB=1)
        elif kind == "tanh":
            x = g.node("Tanh", [x], where)
        elif kind == "relu":
            x = g.node("Relu", [x], where)
        i += 2 if fold else 1
    return x, rank


def _emit_residual(g: GraphBuilder, mod: nn.Module, x: str, shift, where: str) -> str:
    """c·x + (1 − c)·LinfDist(x, W) (+ b − μ). c and 1 − c must be exact float32 values summing
    to 1 (nets.layers snaps c to a 2^-16 grid); anything else is refused, not rounded."""
    c = float(mod.c)
    c32, rest32 = np.float32(c), np.float32(1.0 - c)
    if float(c32) != c or float(rest32) != 1.0 - c or not 0.0 <= c < 1.0:
        raise ModelError(f"{where}: residual coefficient c = {c!r} is not exact in float32 with 1 − c")
    w, b = _dist_params(mod, shift)
    d = g.node(linf_spec.LINF_DIST, [x, g.init(f"{where}.weight", w)], where, domain=linf_spec.DOMAIN)
    y = g.node("Add", [g.node("Mul", [x, g.init(f"{where}.c", c32.reshape(()))], f"{where}.skip"),
                       g.node("Mul", [d, g.init(f"{where}.one_minus_c", rest32.reshape(()))], f"{where}.dist")],
               where)
    return y if b is None else g.node("Add", [y, g.init(f"{where}.bias", b)], f"{where}.bias")


def _pool_attrs(mod: nn.Module, kind: str, where: str) -> dict:
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(int(a) for a in v)

    k, s, p = pair(mod.kernel_size), pair(mod.stride if mod.stride is not None else mod.kernel_size), pair(mod.padding)
    dil = pair(getattr(mod, "dilation", 1))
    if mod.ceil_mode or p != (0, 0) or dil != (1, 1) or getattr(mod, "divisor_override", None):
        raise ModelError(f"{where}: only pooling with padding 0, dilation 1, ceil_mode False is exportable")
    if kind == "maxpool" and getattr(mod, "return_indices", False):
        raise ModelError(f"{where}: MaxPool2d with return_indices is not exportable")
    return dict(kernel_shape=list(k), strides=list(s), pads=[0, 0, 0, 0])


def _emit_pool(g: GraphBuilder, mod: nn.Module, x: str, kind: str, where: str) -> str:
    op = "MaxPool" if kind == "maxpool" else "AveragePool"
    return g.node(op, [x], where, **_pool_attrs(mod, kind, where))


def _emit_distconv(g: GraphBuilder, mod: nn.Module, ins: list[str], where: str) -> str:
    if isinstance(mod.padding, str):
        raise ModelError(f"{where}: string padding {mod.padding!r} is not exportable")
    (sh, sw), (ph, pw), (dh, dw) = mod.stride, mod.padding, mod.dilation
    return g.node(linf_spec.LINF_DIST_CONV, ins, where, domain=linf_spec.DOMAIN,
                  strides=[sh, sw], pads=[ph, pw, ph, pw], dilations=[dh, dw])


def emit_net(g: GraphBuilder, model: nn.Module, x: str, prefix: str) -> str:
    """Emit one LinfDistNet (trunk, optional head; pure nets end in Neg); returns the logits name."""
    if not hasattr(model, "trunk"):
        raise ModelError(f"cannot export {type(model).__name__}: expected a nets model with .trunk/.head")
    z, rank = emit_sequential(g, model.trunk, x, f"{prefix}trunk", 4)
    head = getattr(model, "head", None)
    if head is not None:
        z, rank = emit_sequential(g, head, z, f"{prefix}head", rank)
    if rank != 2:
        raise ModelError(f"{prefix or 'model'}: the logits must be [N, K]; add Flatten before the last layer")
    return g.node("Neg", [z], f"{prefix}logits") if head is None else z


def emit_ensemble(g: GraphBuilder, members, weights: np.ndarray, mode: str, x: str) -> str:
    """Convex combination of member logits (fusion) or of member softmaxes (voting)."""
    if mode not in ("fusion", "voting"):
        raise ModelError(f"unknown ensemble mode {mode!r}; expected fusion or voting")
    terms = []
    for i, member in enumerate(members):
        y = emit_net(g, member, x, f"member{i}.")
        if mode == "voting":
            y = g.node("Softmax", [y], f"member{i}.vote", axis=-1)
        wi = g.init(f"ensemble.weight.{i}", np.asarray(weights[i], np.float32).reshape(()))
        terms.append(g.node("Mul", [y, wi], f"member{i}.weighted"))
    if len(terms) == 1:
        return terms[0]
    return g.node("Sum", terms, "ensemble")
