"""Graph rewrites that keep semantics bit-identical, and structural queries for the certifier.

``fuse_linf_patterns``: a third-party ℓ∞-dist layer written with standard ops,

    U = Unsqueeze(X[N, D], axes=[1] or [-2])            -> [N, 1, D]
    S = Sub(U, C) or Sub(C, U), C constant [M, D] or [1, M, D], or any shape that broadcasts
        against U to [N, M, D] without changing U ([D], [M, 1], [1, M, 1]...)
    A = Abs(S);  R = ReduceMax(A, axes=[2] or [-1], keepdims=0)  -> [N, M]
    optional Y = Add(R, B) or Add(B, R), B constant broadcastable to [1, M]

is replaced by one ``linf::LinfDist(X, W, B)`` node. Why this is exact: onnxruntime computes
``RN(x - w)`` per element (``RN(w - x) = -RN(x - w)``, so abs agrees), abs and max exactly, and the
bias as one rounded add -- precisely the LinfDist semantics (a C that broadcasts along D is the
same subtraction of W = C broadcast to [M, D], which is what the fused node gets, so every
consumer of W -- the core kernels, the onnxruntime box kernel of verify/bounds/fastibp.py -- sees the
[M, D] weights LinfDist is defined on; a C wider than X would broadcast X, so it is not fused);
the fused graph therefore has the same
float32 outputs and is bounded by the same (tight) LinfDist interval and Lipschitz rules.
Intermediate tensors must have exactly one consumer and must not be the graph output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from verify.front.graph import Graph, evaluate
from verify.ops.base import NodeSpec, Op


@dataclass
class LastAffine:
    """The output is ``x @ W.T + b`` of the tensor ``input_name`` (W [K, H] float32, b [K] float32):
    the exact real map the certifier may merge into the margin (paper Eqn 21). ``node`` produced it."""

    weight: np.ndarray
    bias: np.ndarray
    input_name: str
    node: str


def _axes(op: Op, idx: int) -> list[int] | None:
    if "axes" in op.attrs:
        return [int(a) for a in op.attrs["axes"]]
    if len(op.inputs) > idx and op.inputs[idx]:
        c = op.const(idx)
        return None if c is None else [int(a) for a in np.asarray(c).reshape(-1)]
    return None


def _single_consumer(g: Graph, tensor: str, producer_of: dict[str, Op]) -> Op | None:
    if tensor == g.output_name:
        return None
    users = [op for op in g.nodes if tensor in op.inputs]
    return users[0] if len(users) == 1 and users[0].inputs.count(tensor) == 1 else None


def _match(g: Graph, red: Op, prod: dict[str, Op], shapes: dict[str, tuple]):
    """Return (nodes to remove, X name, W [M, D], B [M] or None, output name) or None."""
    def rank(t):
        return len(shapes[t]) if t in shapes else None

    if red.op_type != "ReduceMax" or red.domain or int(red.attrs.get("keepdims", 1)) != 0:
        return None
    if rank(red.inputs[0]) != 3 or _axes(red, 1) not in ([2], [-1]):
        return None
    ab = prod.get(red.inputs[0])
    if ab is None or ab.op_type != "Abs" or _single_consumer(g, ab.outputs[0], prod) is not red:
        return None
    sub = prod.get(ab.inputs[0])
    if sub is None or sub.op_type != "Sub" or _single_consumer(g, sub.outputs[0], prod) is not ab:
        return None
    ci = 1 if sub.const(1) is not None else 0 if sub.const(0) is not None else None
    if ci is None:
        return None
    c = sub.const(ci)
    uns = prod.get(sub.inputs[1 - ci])
    if uns is None or uns.op_type != "Unsqueeze" or _single_consumer(g, uns.outputs[0], prod) is not sub:
        return None
    x = uns.inputs[0]
    if rank(x) != 2 or _axes(uns, 1) not in ([1], [-2]) or c.dtype != np.float32:
        return None
    d = shapes[x][1]
    if not 1 <= c.ndim <= 3:
        return None
    c3 = c.reshape((1,) * (3 - c.ndim) + c.shape)
    if c3.shape[0] != 1 or c3.shape[1] < 1 or c3.shape[2] not in (1, d):
        return None  # C would broadcast along N, or X along D (LinfDist's W is [M, D], X [N, D])
    c = np.broadcast_to(c3[0], (c3.shape[1], d))
    remove = [uns, sub, ab, red]
    out, bias = red.outputs[0], None
    add = _single_consumer(g, out, prod)
    if add is not None and add.op_type == "Add" and not add.domain:
        bi = 1 if add.inputs[0] == out else 0
        b = add.const(bi)
        if b is not None and b.dtype == np.float32 and b.ndim <= 2:
            try:
                bias = np.ascontiguousarray(np.broadcast_to(b, (1, c.shape[0]))[0])
                if np.broadcast_shapes(b.shape, (1, c.shape[0])) == (1, c.shape[0]):
                    remove.append(add)
                    out = add.outputs[0]
                else:
                    bias = None
            except ValueError:
                bias = None
    return remove, x, np.ascontiguousarray(c), bias, out


def fuse_linf_patterns(g: Graph, shapes: dict[str, tuple] | None = None) -> Graph:
    """Rewrite standard-op ℓ∞-dist layers into linf::LinfDist (see module docstring).

    ``shapes``: tensor name -> shape (from a dry run, :func:`tensor_shapes`); nothing is fused without."""
    from verify.ops.op_linfdist import LinfDist

    if not shapes or not any(op.op_type == "ReduceMax" for op in g.nodes):
        return g
    nodes = list(g.nodes)
    consts = dict(g.constants)
    changed = True
    while changed:
        changed = False
        prod = {o: op for op in nodes for o in op.outputs}
        cur = Graph(g.input_name, g.output_name, nodes, consts)
        for op in nodes:
            m = _match(cur, op, prod, shapes)
            if m is None:
                continue
            remove, x, w, b, out = m
            wname = f"{op.name}::fused_W"
            consts[wname] = w
            inputs = [x, wname]
            if b is not None:
                consts[f"{op.name}::fused_B"] = b
                inputs.append(f"{op.name}::fused_B")
            spec = NodeSpec(f"{op.name}::fused_linf", "LinfDist", "linf", inputs, [out], {}, 1)
            new = LinfDist(spec, {1: w, **({2: b} if b is not None else {})})
            pos = nodes.index(remove[0])
            nodes = [n for n in nodes if all(n is not r for r in remove)]
            nodes.insert(min(pos, len(nodes)), new)
            changed = True
            break
    from verify.front.graph import toposort

    nodes = toposort(nodes, set(consts) | {g.input_name})
    return Graph(g.input_name, g.output_name, nodes, consts)


def tensor_shapes(g: Graph, x: np.ndarray) -> dict[str, tuple]:
    """Shape of every tensor from one evaluation on ``x`` (used to make fusion shape-aware)."""
    return {k: np.shape(v) for k, v in evaluate(g, x, keep_all=True).items()}


def find_last_affine(g: Graph):
    """``LastAffine`` when the graph output is ``h @ W.T + b`` computed by Gemm(h, B, C?)
    (alpha = beta = 1, transA = 0, constant B and C), MatMul(h, B) with a constant 2-D B, or one of
    those (without its own bias) followed by Add of a constant vector, each optionally followed by
    a final Neg (folded into W and b); otherwise None.

    W is [K, H] and b [K] (float32, the exact stored values). The certifier must still account for the
    float32 rounding of this layer when it reasons about onnxruntime's evaluation (γ_n, see
    verify/ops/_affine.py); the real-valued map is exact."""

    prod = {o: op for op in g.nodes for o in op.outputs}
    op = prod.get(g.output_name)
    sign = 1.0
    if op is not None and op.op_type == "Neg" and not op.domain:
        inner = prod.get(op.inputs[0])
        if inner is None or _single_consumer(g, inner.outputs[0], prod) is not op:
            return None
        op, sign = inner, -1.0
    if op is None or op.domain:
        return None
    bias = None
    if op.op_type == "Add":
        ci = 1 if op.const(1) is not None else 0 if op.const(0) is not None else None
        if ci is None:
            return None
        bias = op.const(ci)
        inner = prod.get(op.inputs[1 - ci])
        if inner is None or _single_consumer(g, inner.outputs[0], prod) is not op:
            return None
        if inner.op_type == "Gemm" and len(inner.inputs) > 2 and inner.inputs[2]:
            return None
        op = inner
    w = None
    if op.op_type == "Gemm" and not op.domain and op.is_var(0) and op.const(1) is not None:
        if float(op.attrs.get("alpha", 1.0)) != 1.0 or float(op.attrs.get("beta", 1.0)) != 1.0:
            return None
        if int(op.attrs.get("transA", 0)):
            return None
        b = op.const(1)
        w = b if int(op.attrs.get("transB", 0)) else b.T
        if len(op.inputs) > 2 and op.inputs[2]:
            if op.const(2) is None:
                return None
            bias = op.const(2)
    elif op.op_type == "MatMul" and not op.domain and op.is_var(0):
        b = op.const(1)
        if b is None or b.ndim != 2:
            return None
        w = b.T
    if w is None or w.dtype != np.float32:
        return None
    k = w.shape[0]
    if bias is None:
        bias = np.zeros(k, np.float32)
    if bias.dtype != np.float32:
        return None
    try:
        if np.broadcast_shapes(bias.shape, (1, k)) != (1, k):
            return None
        bvec = np.ascontiguousarray(np.broadcast_to(bias, (1, k))[0])
    except ValueError:
        return None
    # negation is exact in float32: Neg(h @ W.T + b) = h @ (-W).T + (-b)
    w = (sign * w).astype(np.float32)
    bvec = (sign * bvec).astype(np.float32)
    return LastAffine(np.ascontiguousarray(w), bvec, op.inputs[0], op.name)
