"""``load_model(path) -> VerifiedModel``: the verifier's view of an ONNX file (see docs/DESIGN.md).

Pipeline: safe read (verify/front/loader.py) -> NodeSpecs in topological order -> bind every node to its
registry op (ONE ModelError naming every unsupported node or invalid constant) -> fold constant
subgraphs whose value is provably exact (``Op.fold``; the rest stay nodes bounded from point boxes) -> fuse standard-op ℓ∞-dist layers into linf::LinfDist
(verify/front/fuse.py) -> dry run on zeros, checking every tensor's shape against ONNX shape inference.

What ``interval``/``propagate`` guarantee (each op's proof is in its file):
1. real semantics: for every real input in the box, the exact real value of the function defined by
   the stored float32 weights lies in the returned box (directed rounding, proven error bounds);
2. float32 semantics: for every float32 input in the box, the float32 output of onnxruntime's CPU
   execution provider with graph optimisations disabled (the pinned session of common/runtime.py,
   which runs the graph node by node as written) lies in it too, under two stated assumptions: dot products are evaluated
   in float32 in some order (error <= γ_n), and MLAS tanh/sigmoid/exp are within 2^-16 relative +
   2^-20 absolute (measured in tests/test_ops_soundness.py). The ℓ∞-dist ops need no assumption:
   their float32 result is the correctly rounded exact value (docs/FACTS.md F1). FTZ/DAZ voids both, so it
   is checked before every bound (verify.bounds.rounding.require_ieee_subnormals).
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from verify.front.batch_axis import check_per_sample
from common.errors import ModelError
from verify.front.fuse import LastAffine, find_last_affine, fuse_linf_patterns, tensor_shapes
from verify.front.graph import Graph, NodeLipschitz, evaluate, lipschitz_table, output_lipschitz, propagate, toposort
from verify.front.loader import RawModel, read_model, tensor_to_numpy
from verify.ops.base import Box, NodeSpec, Op, attrs_of
from verify.bounds.rounding import require_ieee_subnormals


def _specs(raw: RawModel) -> list[NodeSpec]:
    specs = []
    names = set()
    for k, n in enumerate(raw.proto.graph.node):
        name = n.name or f"{n.op_type}_{k}"
        while name in names:
            name = f"{name}_{k}"
        names.add(name)
        domain = "" if n.domain == "ai.onnx" else n.domain
        specs.append(NodeSpec(name, n.op_type, domain, list(n.input), list(n.output), attrs_of(n),
                              raw.opsets.get(domain, 0)))
    return specs


def _bind(specs: list[NodeSpec], constants: dict[str, np.ndarray]) -> list[Op]:
    """Bound ops in order; nodes whose inputs are all constants are folded into ``constants`` only
    when ``Op.fold`` proves the folded value exact (theorem (a) is about exact arithmetic on the stored
    weights: (1 + 2^-30 - 1) * 2^30 is 1, not float32's 0); the others stay as nodes, bounded from
    point boxes of their constants. Every node's constants are validated (``Op.nonfinite_constants``,
    ``Op.constants_problem``)."""
    from verify.ops._op_list import OPS, supported_ops

    ops, missing, bad = [], [], []
    unread: set[str] = set()  # outputs of unsupported nodes and of the nodes they feed
    inexact: set[str] = set()  # outputs of constant nodes left unfolded (rounding happened)
    for s in specs:
        cls = OPS.get((s.domain, s.op_type))
        label = f"{s.name} ({s.domain + '::' if s.domain else ''}{s.op_type})"
        if cls is None:
            missing.append(f"{s.domain + '::' if s.domain else ''}{s.op_type}")
            unread.update(s.outputs)
            continue
        if unread & set(s.inputs):  # fed by an unsupported node: its constants are unknown
            unread.update(s.outputs)
            continue
        op = cls(s, {i: constants[t] for i, t in enumerate(s.inputs) if t in constants})
        reason = op.nonfinite_constants() or op.unsupported() or op.constants_problem()
        if not reason and any(o for o in s.outputs[1:]) and not cls.multi_output:
            reason = "optional extra outputs are not supported"
        if reason:
            rounded = sorted(set(s.inputs) & inexact)
            if rounded:
                reason += f" (input(s) {', '.join(rounded)} are computed from constants with rounding, so not folded)"
            bad.append(f"{label}: {reason}")
            continue
        ops.append(op)
        if all(t == "" or t in constants for t in s.inputs):
            outs = op.fold(*[None if t == "" else constants[t] for t in s.inputs])
            if outs is None:
                inexact.update(s.outputs)
                continue
            for name, v in zip(s.outputs, outs if len(s.outputs) > 1 else (outs,)):
                constants[name] = np.asarray(v)
            ops.pop()
    if missing or bad:
        raise ModelError(unsupported_message(missing, bad, supported_ops()))
    return ops


def unsupported_message(missing: list[str], bad: list[str], supported: list[str], shown: int = 8) -> str:
    """ONE short line whatever the model's size: the unsupported op types with their counts (most
    frequent first, at most ``shown``), the first node refused for another reason (and how many
    more), then the supported set."""
    parts = []
    if missing:
        counts = Counter(missing).most_common()
        types = ", ".join(f"{t[:60]} ×{c}" for t, c in counts[:shown])
        more = f" and {len(counts) - shown} more types" if len(counts) > shown else ""
        parts.append(f"unsupported ops: {types}{more}")
    if bad:
        more = f" (and {len(bad) - 1} more node(s))" if len(bad) > 1 else ""
        parts.append(f"unsupported node {bad[0][:200]}{more}")
    line = "; ".join(parts) + f". Supported: {' '.join(supported)}"
    return "".join(c if c.isprintable() else "?" for c in line)  # names come from the file


def _dry_run(g: Graph, raw: RawModel) -> int:
    n = raw.batch_dim or 1
    vals = evaluate(g, np.zeros([n] + raw.input_dims, np.float32), keep_all=True)
    for name, v in vals.items():
        want = raw.shapes.get(name)
        if want is not None:
            if len(want) != v.ndim or any(w is not None and w != s for w, s in zip(want, v.shape) if w):
                raise ModelError(f"tensor {name!r}: shape {list(v.shape)} disagrees with ONNX shape inference {list(want)}")
    out = vals[g.output_name]
    if out.ndim != 2 or out.shape[0] != n:
        raise ModelError(f"the output must have shape [N, K], got {list(out.shape)} for N = {n}")
    if out.dtype != np.float32:
        raise ModelError(f"the output must be float32, got {out.dtype}")
    return int(out.shape[1])


class VerifiedModel:
    """A loaded model: float32 forward, sound interval propagation and Lipschitz bounds.

    Attributes: ``input_name``, ``input_shape`` (without N), ``output_name``, ``num_classes``,
    ``metadata`` (dict of metadata_props; claims, never trusted), ``sha256``, ``path``,
    ``batch_size`` (None = dynamic; a fixed batch dim makes forward/interval run in chunks of it),
    ``graph`` (:class:`verify.front.graph.Graph`; ``graph.nodes`` is the list of bound ops).
    """

    def __init__(self, raw: RawModel, graph: Graph, num_classes: int):
        self.path = raw.path
        self.sha256 = raw.sha256
        self.metadata = dict(raw.metadata)
        self.opsets = dict(raw.opsets)
        self.input_name = graph.input_name
        self.output_name = graph.output_name
        self.input_shape = tuple(raw.input_dims)
        self.batch_size = raw.batch_dim
        self.num_classes = num_classes
        self.graph = graph

    # ---- evaluation ----
    def _check_x(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.float32:
            raise ModelError(f"{what} must be float32, got {x.dtype}")
        if tuple(x.shape[1:]) != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ModelError(f"{what} must have shape [N, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}")
        return x

    def per_chunk(self, fn, *arrays):
        """``fn`` applied to row chunks of ``arrays`` (same number of rows N each), the results
        concatenated: THE one place where a batch is cut for this model's graph (forward, interval,
        boxes, the chain fast path of verify/bounds/fastpath.py, and through them certify and check).

        A dynamic batch gets all N rows at once. A fixed batch size B gets chunks of exactly B rows,
        a short last chunk padded with copies of its last row (harmless: the graph is per-sample,
        verify/front/batch_axis.py, or B = 1, when a run holds one sample whatever the graph); a graph
        whose Reshape names B would merge samples if fed any other number of rows. ``fn`` must
        return an array or a tuple of arrays, each with one row per chunk row
        (per sample); the padding rows are dropped."""
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise ModelError("the arrays of one batch must have the same number of rows")
        b = self.batch_size
        if not b:
            return _rows(fn(*arrays), n, n)
        parts = []
        for s in range(0, max(n, 1), b):  # no rows: one chunk of zeros, all dropped
            chunk = [a[s:s + b] if n else np.zeros((b, *a.shape[1:]), a.dtype) for a in arrays]
            k = min(b, n - s)
            if len(chunk[0]) < b:
                chunk = [np.concatenate([c, np.repeat(c[-1:], b - k, 0)]) for c in chunk]
            parts.append(_rows(fn(*chunk), k, b))
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(c) for c in zip(*parts))
        return np.concatenate(parts)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """float32 logits [N, K] as onnxruntime computes them (bit-identical for ℓ∞-dist, shape and
        elementwise IEEE ops; within float32 dot-product/libm error for Gemm/Conv/tanh...)."""
        x = self._check_x(x, "input")
        if x.shape[0] == 0:
            return np.zeros((0, self.num_classes), np.float32)
        return self.per_chunk(lambda xi: evaluate(self.graph, xi)[self.output_name], x)

    def _check_box(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        require_ieee_subnormals()
        lo = self._check_x(lo, "lower bound")
        hi = self._check_x(hi, "upper bound")
        if lo.shape != hi.shape or np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
            raise ModelError("the input box must satisfy lo <= hi elementwise (same shape, no NaN)")
        return lo, hi

    def propagate(self, lo: np.ndarray, hi: np.ndarray) -> dict[str, Box]:
        """Sound boxes of EVERY tensor (graph input, intermediates, output) for inputs in [lo, hi].
        Requires a dynamic batch or N equal to the fixed batch size (intermediate tensors cannot be
        cut into samples in general; :meth:`boxes` chunks for per-sample tensors)."""
        lo, hi = self._check_box(lo, hi)
        if self.batch_size and lo.shape[0] != self.batch_size:
            raise ModelError(f"this model has a fixed batch size {self.batch_size}")
        return propagate(self.graph, Box(lo, hi), keep_all=True)

    def boxes(self, lo: np.ndarray, hi: np.ndarray, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Sound boxes (lo, hi) of the named tensors for inputs in [lo, hi], any N (in chunks,
        :meth:`per_chunk`). Each named tensor must have one row per sample ([N, ...]), as the
        output and the input of the last affine layer (``h`` of ``h @ W.T + b``) do."""
        lo, hi = self._check_box(lo, hi)
        names = list(dict.fromkeys(names))

        def one(li, hi_i):
            vals = propagate(self.graph, Box(li, hi_i), keep_all=True)
            for name in names:
                if vals[name].lo.ndim == 0 or vals[name].lo.shape[0] != li.shape[0]:
                    raise ModelError(f"tensor {name!r} does not have one row per sample")
            return tuple(a for name in names for a in (vals[name].lo, vals[name].hi))

        got = self.per_chunk(one, lo, hi)
        return {name: (got[2 * i], got[2 * i + 1]) for i, name in enumerate(names)}

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sound float32 enclosure (lo_out, hi_out) [N, K] of the logits for every real input in the
        box and of onnxruntime's float32 logits for every float32 input in it."""
        lo, hi = self._check_box(lo, hi)
        if lo.shape[0] == 0:
            z = np.zeros((0, self.num_classes), np.float32)
            return z, z.copy()

        def one(li, hi_i):
            b = propagate(self.graph, Box(li, hi_i), keep_all=False)[self.output_name]
            return b.lo.astype(np.float32), b.hi.astype(np.float32)

        return self.per_chunk(one, lo, hi)

    # ---- Lipschitz ----
    def node_lipschitz(self) -> list[NodeLipschitz]:
        """Per node: name, op_type, local bound, cumulative bound (upward rounded; inf = unbounded)."""
        return lipschitz_table(self.graph)

    def lipschitz(self) -> float:
        """Sound global ℓ∞→ℓ∞ Lipschitz bound of the logits (math.inf if none is known)."""
        return float(output_lipschitz(self.graph))

    # ---- structure for the certifier ----
    def last_affine(self) -> LastAffine | None:
        """When the logits are produced by Gemm (A variable, B/C constant) or MatMul with a constant
        right operand (optionally followed by Add of a constant vector), return the exact map
        ``logits = h @ W.T + b`` as float32 arrays and the name of ``h``; otherwise None."""

        return find_last_affine(self.graph)


def _rows(out, k: int, n: int):
    """The first k rows of each per-sample result of one chunk of n rows (:meth:`VerifiedModel.per_chunk`)."""
    def cut(a):
        a = np.asarray(a)
        if a.ndim == 0 or a.shape[0] != n:
            raise ModelError(f"a per-sample result has shape {list(a.shape)}, not {n} rows")
        return a[:k]

    if isinstance(out, tuple):
        return tuple(cut(v) for v in out)
    return cut(out)


def build_graph(raw: RawModel) -> Graph:
    """Bind, fold, fuse and order the nodes of a validated model."""
    constants = {t.name: tensor_to_numpy(t) for t in raw.proto.graph.initializer}
    specs = toposort(_specs(raw), set(constants) | {raw.input_name})
    ops = _bind(specs, constants)
    g = Graph(raw.input_name, raw.output_name, ops, constants)
    if raw.output_name in constants:
        raise ModelError("the model output does not depend on its input")
    if any(op.op_type == "ReduceMax" for op in g.nodes):

        shapes = tensor_shapes(g, np.zeros([raw.batch_dim or 1] + raw.input_dims, np.float32))
        g = fuse_linf_patterns(g, shapes)
    return g


def load_model(path: str | os.PathLike) -> VerifiedModel:
    """Load an ONNX file for verification; raises ModelError with a one-line message on bad input."""
    raw = read_model(path)
    g = build_graph(raw)
    k = _dry_run(g, raw)
    check_per_sample(g, raw.input_dims, raw.batch_dim)
    if raw.num_classes is not None and raw.num_classes != k:
        raise ModelError(f"the output declares {raw.num_classes} classes but computes {k}")
    return VerifiedModel(raw, g, k)


__all__ = ["load_model", "VerifiedModel", "LastAffine", "Box", "NodeLipschitz"]
