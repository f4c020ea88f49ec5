"""Forward-error bounds for chains of 1-Lipschitz ops: sound margins at the cost of one forward.

For a graph that is a chain (each node has exactly one variable input, the previous node's output)
of ops that are 1-Lipschitz in ℓ∞ and whose float32 evaluation is at most two correctly rounded
operations per output — ``linf::LinfDist``, ``linf::LinfDistConv`` (``RN(RN(max|x − w|) + b)``,
docs/FACTS.md F1), ``Neg``, ``Relu``, ``MaxPool``, ``Identity``, ``Flatten``, ``Reshape``, ``Squeeze``,
``Unsqueeze`` (exact) and ``Add``/``Sub`` of a constant (one rounding) — :class:`ChainBound`
returns the float32 logits ŷ (computed by onnxruntime itself when it can expose the intermediate
tensors, else by the core's bit-identical forward) together with a float64 bound e per
sample such that

    (a) ‖ŷ(x) − f(x)‖∞ ≤ e(x)   (f = the exact real function, x = the float32 input), and
    (b) ‖ŷ(x′) − f(x′)‖∞ ≤ e′(x, ε) for every float32 x′ with ‖x′ − x‖∞ ≤ ε (onnxruntime at x′).

Proof: layer k is 1-Lipschitz, so its exact value at the exact input differs from its exact value at
the float input by ≤ e_{k−1}; its own rounding adds ≤ u·(|v| + |ŷ_k|) ≤ u·(2|ŷ_k| + |b|)(1 + 4u)
(+ 2^-148 for subnormal results), u = 2^-24: e_k = e_{k−1} + local_k, summed upward. For (b) the
magnitudes at x′ are bounded by |ŷ_k(x)| + ε + e_k(x) + e_k(x′) (chain of 1-Lipschitz maps), and
the resulting linear inequality in e_k(x′) is solved with upward rounding.
"""

from __future__ import annotations

import math

import numpy as np

from verify.front.graph import evaluate

__all__ = ["ChainBound"]

U = 2.0**-24
SUB = 2.0**-148  # two half-units of the smallest subnormal
_EXACT = {"Neg", "Relu", "MaxPool", "Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze"}
_DIST = {"LinfDist", "LinfDistConv"}
_SLACK = 1.0 + 4 * U


def _up(v):
    return np.nextafter(np.asarray(v, dtype=np.float64), np.inf)


class ChainBound:
    """Float32 logits with a proven error bound, for supported chains (:meth:`build` → None else)."""

    def __init__(self, model, steps):
        self.model = model
        self.steps = steps  # list of (output name, kind, |bias| max or 0)
        self._sess = _ort_values_session(model, [n for n, k, _ in steps if k != "exact"])
        self._names = [n for n, k, _ in steps if k != "exact"] + [model.graph.output_name]
        if self._sess is not None and not self._same_as_ours():
            self._sess = None

    def _values(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The float32 tensors the bound needs for ONE chunk of rows (``model.per_chunk``): from
        onnxruntime itself when it could expose them (faster, and by construction what onnxruntime
        computes; dynamic batch only), else from the core's forward."""
        if self._sess is not None:
            outs = self._sess.run(self._names, {self.model.input_name: x})
            return dict(zip(self._names, outs))
        return evaluate(self.model.graph, x, keep_all=True)

    def _same_as_ours(self) -> bool:
        """Probe: onnxruntime's intermediate values equal the core's forward bit for bit (the
        session exists for a dynamic batch only, so any row count is the model's)."""
        rng = np.random.default_rng(0)
        x = rng.random((3, *self.model.input_shape)).astype(np.float32)
        ours = evaluate(self.model.graph, x, keep_all=True)
        theirs = dict(zip(self._names, self._sess.run(self._names, {self.model.input_name: x})))
        return all(np.array_equal(ours[n], theirs[n]) for n in self._names)

    @classmethod
    def build(cls, model) -> "ChainBound | None":
        g = model.graph
        prev, steps = g.input_name, []
        for op in g.nodes:
            var = [i for k, i in enumerate(op.inputs) if i != "" and i not in g.constants and k not in op.consts]
            if var != [prev] or len(op.outputs) != 1:
                return None
            kind = _kind(op, prev)
            if kind is None:
                return None
            bias = 0.0
            if kind == "dist" and len(op.inputs) > 2 and op.inputs[2] != "":
                b = op.consts.get(2, g.constants.get(op.inputs[2]))
                if b is None:
                    return None
                bias = float(np.max(np.abs(np.asarray(b, np.float64)))) if np.size(b) else 0.0
            steps.append((op.outputs[0], kind, bias))
            prev = op.outputs[0]
        if prev != g.output_name or not math.isfinite(sum(s[2] for s in steps)):
            return None
        return cls(model, steps)

    def forward_with_error(self, x: np.ndarray, eps: float = 0.0):
        """(ŷ float32 [B, K], e float64 [B], e′ float64 [B]) — see the module docstring. Runs in
        the model's chunks (``VerifiedModel.per_chunk``): a fixed batch size is never fed other row
        counts."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        eps = np.broadcast_to(np.asarray(eps, np.float64), (x.shape[0],))  # a scalar or one per sample
        return self.model.per_chunk(self._chunk_error, x, eps)

    def _chunk_error(self, x: np.ndarray, eps: np.ndarray):
        """forward_with_error of one chunk. With a dynamic batch row i of every chain tensor is
        sample i (per-sample graph, verify/front/batch_axis.py), so magnitudes are taken per row. With a
        fixed batch size B > 1 an intermediate tensor need not be laid out by samples (a Reshape
        may name B), so the bound is taken over the whole chunk: every chain op is 1-Lipschitz in
        ℓ∞ of the whole tensor, so the proof holds for the chunk as one input, at the largest ε of
        the chunk (B = 1: the same)."""
        vals = self._values(x)
        n = x.shape[0]
        rows = 1 if self.model.batch_size else n
        eps = eps.reshape(n) if rows == n else np.max(eps, initial=0.0, keepdims=True)
        e = np.zeros(rows)
        e2 = np.zeros(rows)
        denom = 1.0 - 2 * U * _SLACK  # e2_k (1 - 2u·slack) ≤ e2_{k-1} + u·slack·(2(|ŷ|+ε+e_k) + |b|)
        for name, kind, bias in self.steps:
            if kind == "exact":
                continue
            v = vals[name]
            mag = np.max(np.abs(v.reshape(rows, -1).astype(np.float64)), axis=1) if v.size else np.zeros(rows)
            if not np.isfinite(mag).all():
                mag = np.where(np.isfinite(mag), mag, np.inf)
            if kind == "dist":
                local = _up(_up(U * _SLACK * _up(2 * mag + bias)) + SUB)
            else:  # one rounding of the result
                local = _up(_up(U * _SLACK * mag) + SUB)
            e = _up(e + local)
            grow = _up(2 * _up(_up(mag + eps) + e) + (bias if kind == "dist" else 0.0))
            e2 = _up(_up(_up(e2 + _up(U * _SLACK * grow)) + SUB) / denom)
        e, e2 = np.broadcast_to(e, n).copy(), np.broadcast_to(e2, n).copy()
        return vals[self.model.graph.output_name], e, np.maximum(e2, e)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sound logit box for the input box [lo, hi], the same float32 values as the core's
        ``VerifiedModel.interval``: ℓ∞-dist layers through onnxruntime (verify/bounds/fastibp.py, each
        probe-checked bit-identical to the core's kernel), every other node through the core op's
        own ``interval``; in the model's chunks (``VerifiedModel.per_chunk``). The caller checks
        FTZ/DAZ (rounding.require_ieee_subnormals)."""
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        return self.model.per_chunk(self._chunk_interval, lo, hi)

    def _chunk_interval(self, lo: np.ndarray, hi: np.ndarray):
        from verify.ops.base import Box

        g = self.model.graph
        vals = {g.input_name: Box(lo, hi)}
        for op in g.nodes:
            args = [None if i == "" else Box.point(g.constants[i]) if i in g.constants else vals[i]
                    for i in op.inputs]
            fast = self._box_kernel(op)
            if fast is not None:
                out = fast.interval(args[0], args[2] if len(args) > 2 else None)
            else:
                out = op.bound(*args)
            vals[op.outputs[0]] = out
        b = vals[g.output_name]
        return b.lo, b.hi

    def _box_kernel(self, op):
        if not hasattr(self, "_kernels"):
            self._kernels = {}
        if op.name not in self._kernels:
            k = None
            if op.domain == "linf" and op.op_type == "LinfDist" and 1 in op.consts:
                from verify.bounds.fastibp import OrtLinfBox

                k = OrtLinfBox.build(op.consts[1], _threads())
            self._kernels[op.name] = k
        return self._kernels[op.name]


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _ort_values_session(model, names):
    """An onnxruntime session of the model file exposing ``names`` as extra outputs, or None
    (fixed batch size, the file no longer the loaded model, unknown tensor names, or onnxruntime
    refuses). The file is re-read by the loader (external data included, same safety rules) and
    used only when its identity is the loaded model's."""
    if getattr(model, "batch_size", None) or not hasattr(model, "path"):
        return None
    try:
        import onnx

        from verify.front.loader import load_proto

        proto, sha = load_proto(model.path)
        if sha != getattr(model, "sha256", None):
            return None
        known = {o for n in proto.graph.node for o in n.output}
        have = {o.name for o in proto.graph.output}
        if not set(names) <= known | have:
            return None
        for n in names:
            if n not in have:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
        from common.runtime import ort_session

        return ort_session(proto, threads=_threads())  # follow the process' thread setting
    except Exception:  # any failure only disables this speed-up
        return None


def _kind(op, prev) -> str | None:
    if op.domain == "linf" and op.op_type in _DIST:
        return "dist" if op.inputs[0] == prev else None
    if op.domain != "":
        return None
    if op.op_type in _EXACT:
        return "exact" if op.inputs[0] == prev else None
    if op.op_type == "Add":
        return "round"
    if op.op_type == "Sub":
        return "round"  # x − c or c − x: 1-Lipschitz, one rounding
    return None
