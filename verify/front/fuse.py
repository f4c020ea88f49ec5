"""Graph rewrites that keep semantics bit-identical, and structural queries for the certifier.

``fuse_linf_patterns``: a third-party ℓ∞-dist layer written with standard ops,

    U = Unsqueeze(X[N, D], axes=[1] or [-2])            -> [N, 1, D]
    S = Sub(U, C) or Sub(C, U) or Add(U, -C), C constant [M, D] or [1, M, D], or any shape that
        broadcasts against U to [N, M, D] without changing U ([D], [M, 1], [1, M, 1]...)
    A = Abs(S) or Abs(Neg(S));  R = ReduceMax(A, axes=[2] or [-1], keepdims=0)  -> [N, M]
    optional Y = Add(R, B) or Add(B, R), B constant broadcastable to [1, M]

and its variants -- Identity anywhere in the chain, R computed as Max(ReduceMax(A1), ReduceMax(A2),
...) of selections A_i of A along d (Slice, Gather, Split; recognised by running the op on index
tensors) whose union is every d -- is replaced by one ``linf::LinfDist(X, W, B)`` node. Why this
is exact: onnxruntime computes ``RN(x - w)`` per element (``RN(w - x) = RN(x + (-w)) = -RN(x - w)``,
so abs agrees), abs, neg, copies and max exactly (a max of maxima over sets is the max over their
union), and the bias as one rounded add -- precisely the LinfDist semantics (a C that broadcasts
along D is the same subtraction of W = C broadcast to [M, D], which is what the fused node gets, so
every consumer of W -- the core kernels, the onnxruntime box kernel of verify/bounds/fastibp.py -- sees the
[M, D] weights LinfDist is defined on; a C wider than X would broadcast X, so it is not fused);
the fused graph therefore has the same
float32 outputs and is bounded by the same (tight) LinfDist interval and Lipschitz rules.
Intermediate tensors must be used only inside the pattern and must not be the graph output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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


#: ops that may select along d between Abs and ReduceMax (checked by running them, _selected)
_SELECTIONS = ("Slice", "Gather", "Split")


@dataclass
class _Part:
    """A tensor that is ``|X[n, d] - W[m, d]|`` for d in ``dsel`` ([N, M, len(dsel)], d last:
    :meth:`_Matcher.absdiff`) or its maximum over ``dsel`` ([N, M]: :meth:`_Matcher.maxabs`);
    ``nodes`` compute it."""

    x: str
    w: np.ndarray
    dsel: np.ndarray
    nodes: list


class _Matcher:
    """Recognises the ℓ∞-dist layer written with standard ops (module docstring) bottom-up."""

    def __init__(self, g: Graph, shapes: dict[str, tuple]):
        self.g, self.shapes = g, shapes
        self.prod = {o: op for op in g.nodes for o in op.outputs}

    def _rank(self, t: str):
        return len(self.shapes[t]) if t in self.shapes else None

    def _producer(self, t: str) -> tuple[Op | None, list]:
        """The producer of ``t`` (and the nodes looked through: none; Neg under Abs, see _sub)."""
        return self.prod.get(t), []

    def _weights(self, c: np.ndarray, x: str) -> np.ndarray | None:
        if c.dtype != np.float32 or self._rank(x) != 2 or not 1 <= c.ndim <= 3:
            return None
        d = self.shapes[x][1]
        c3 = c.reshape((1,) * (3 - c.ndim) + c.shape)
        if c3.shape[0] != 1 or c3.shape[1] < 1 or c3.shape[2] not in (1, d):
            return None  # C would broadcast along N, or X along D (LinfDist's W is [M, D], X [N, D])
        return np.ascontiguousarray(np.broadcast_to(c3[0], (c3.shape[1], d)))

    def absdiff(self, t: str) -> _Part | None:
        """Abs(Sub(Unsqueeze(X), C)), Sub(C, U), Add(U, -C) (x + (-w) rounds as x - w), Abs of a
        Neg of those, or a slice of such a tensor along d (Slice, Gather, Split...: recognised by
        running the op on the d indices)."""
        op, seen = self._producer(t)
        if op is None or op.domain or self._rank(t) != 3:
            return None
        if op.op_type == "Abs":
            return self._sub(op, seen)
        base = self.absdiff(op.inputs[0]) if op.inputs and op.is_var(0) else None
        if base is None or any(i and i != op.inputs[0] and op.const(k) is None
                               for k, i in enumerate(op.inputs)):
            return None
        return self._selected(op, t, base, seen)

    def _sub(self, ab: Op, seen: list) -> _Part | None:
        sub, more = self._producer(ab.inputs[0])
        if sub is not None and not sub.domain and sub.op_type == "Neg":
            neg = sub
            sub, more2 = self._producer(neg.inputs[0])
            more = more + [neg] + more2
        if sub is None or sub.domain or sub.op_type not in ("Sub", "Add"):
            return None
        ci = 1 if sub.const(1) is not None else 0 if sub.const(0) is not None else None
        if ci is None:
            return None
        c = sub.const(ci)
        if sub.op_type == "Add":
            c = -c  # negation is exact; RN(u + (-w)) = RN(u - w)
        uns, more3 = self._producer(sub.inputs[1 - ci])
        if uns is None or uns.domain or uns.op_type != "Unsqueeze" or _axes(uns, 1) not in ([1], [-2]):
            return None
        x = uns.inputs[0]
        w = self._weights(c, x)
        if w is None:
            return None
        return _Part(x, w, np.arange(w.shape[1]), seen + [ab, sub, uns] + more + more3)

    def _probe(self, op: Op, t: str, values: np.ndarray) -> np.ndarray | None:
        args = [values] + [None if i == "" else op.const(k) for k, i in enumerate(op.inputs[1:], 1)]
        try:
            res = op.forward(*args)
        except Exception:  # noqa: BLE001 (not a selection this matcher understands)
            return None
        return np.asarray(res[op.outputs.index(t)] if isinstance(res, tuple) else res)

    def _selected(self, op: Op, t: str, base: _Part, seen: list) -> _Part | None:
        """``op`` (Slice, Gather, Split) keeps some d of ``base``: found by running it twice, on the
        d indices and on the (n, m) row numbers (it must keep every row in place); both are exact
        float32 integers (< 2^24)."""
        src, out = self.shapes.get(op.inputs[0]), self.shapes.get(t)
        if op.op_type not in _SELECTIONS or src is None or out is None or len(out) != 3 \
                or tuple(out[:2]) != tuple(src[:2]) or src[2] != len(base.dsel) or out[2] < 1 \
                or max(src[0] * src[1], src[2]) >= 2**24:
            return None
        rows = np.arange(src[0] * src[1], dtype=np.float32).reshape(src[0], src[1], 1)
        d = self._probe(op, t, np.ascontiguousarray(np.broadcast_to(base.dsel.astype(np.float32), src)))
        r = self._probe(op, t, np.ascontiguousarray(np.broadcast_to(rows, src)))
        if d is None or r is None or d.shape != tuple(out) or r.shape != tuple(out) \
                or np.any(d != d[:1, :1]) or np.any(r != rows):
            return None
        return _Part(base.x, base.w, d[0, 0].astype(np.int64), base.nodes + seen + [op])

    def maxabs(self, t: str) -> _Part | None:
        """ReduceMax over d (keepdims 0) of an ``absdiff`` tensor, or Max of several such maxima of
        one X and one W (the max over the union of their index sets)."""
        op, seen = self._producer(t)
        if op is None or op.domain or self._rank(t) != 2:
            return None
        if op.op_type == "ReduceMax":
            if int(op.attrs.get("keepdims", 1)) != 0 or _axes(op, 1) not in ([2], [-1]):
                return None
            a = self.absdiff(op.inputs[0])
            return None if a is None else _Part(a.x, a.w, np.unique(a.dsel), a.nodes + seen + [op])
        if op.op_type == "Max" and op.inputs and all(op.is_var(k) for k in range(len(op.inputs))):
            parts = [self.maxabs(i) for i in op.inputs]
            if any(p is None or p.x != parts[0].x or p.w.shape != parts[0].w.shape
                   or not np.array_equal(p.w, parts[0].w) for p in parts):
                return None
            dsel = np.unique(np.concatenate([p.dsel for p in parts]))
            return _Part(parts[0].x, parts[0].w, dsel,
                         [n for p in parts for n in p.nodes] + seen + [op])
        return None

    def closed(self, nodes: list, out: str) -> bool:
        """Every tensor the nodes produce, except ``out``, is used only by these nodes and is not
        the graph output (so removing them changes nothing else)."""
        ids = {id(n) for n in nodes}
        for n in nodes:
            for o in n.outputs:
                if o == out:
                    continue
                if o == self.g.output_name or any(id(u) not in ids for u in self.g.consumers(o)):
                    return False
        return True


def _match(g: Graph, root: Op, prod: dict[str, Op], shapes: dict[str, tuple]):
    """Return (nodes to remove, X name, W [M, D], B [M] or None, output name) or None."""
    if root.domain or root.op_type not in ("ReduceMax", "Max"):
        return None
    mt = _Matcher(g, shapes)
    part = mt.maxabs(root.outputs[0])
    if part is None or not np.array_equal(part.dsel, np.arange(part.w.shape[1])):
        return None
    remove = list({id(n): n for n in part.nodes}.values())
    out, bias, c = root.outputs[0], None, part.w
    if not mt.closed(remove, out):
        return None
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
    return remove, part.x, np.ascontiguousarray(c), bias, out


def _without_identities(g: Graph) -> list[Op]:
    """The nodes with every Identity (an exact copy) removed, its consumers reading its input
    instead; an Identity producing the graph output stays."""
    from verify.ops.op_identity import Identity

    alias: dict[str, str] = {}
    kept = []
    for op in g.nodes:
        ins = [alias.get(i, i) for i in op.inputs]
        if isinstance(op, Identity) and op.outputs[0] != g.output_name:
            alias[op.outputs[0]] = ins[0]
            continue
        if ins != op.inputs:
            op = type(op)(replace(op.spec, inputs=ins), op.consts)
        kept.append(op)
    return kept


def fuse_linf_patterns(g: Graph, shapes: dict[str, tuple] | None = None) -> Graph:
    """Rewrite standard-op ℓ∞-dist layers into linf::LinfDist (see module docstring).

    ``shapes``: tensor name -> shape (from a dry run, :func:`tensor_shapes`); nothing is fused without."""
    from verify.ops.op_linfdist import LinfDist

    if not shapes or not any(op.op_type == "ReduceMax" for op in g.nodes):
        return g
    nodes = _without_identities(g)
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
