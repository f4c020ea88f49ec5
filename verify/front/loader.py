"""Safe loading of an ONNX file: no reads outside the model's folder, sane sizes, one float input
[N, ...] and one output [N, K], supported tensor dtypes, canonical linf function bodies.

Guarantees of :func:`read_model`:
* the file is parsed without following external-data references; each external tensor is then
  read only when its location is a relative path without ``..`` whose real path (symlinks resolved)
  stays inside the model's folder, with offset/length inside that file; otherwise ModelError;
* ``sha256`` is the model's identity (:func:`model_identity`, the one definition every command
  uses): sha256 of the file bytes, followed (when the model uses external data) by the external
  chunks in tensor order, so any change of any weight changes it;
* model-local functions are inlined only when onnxruntime certainly runs their bodies (a domain it
  registers no operator in, a name no operator has; otherwise ModelError, see
  :func:`_check_runs_as_written`), so what is verified is the body onnxruntime runs; a ``linf``
  function byte-identical to the canonical body of :mod:`common.linf_spec` stays one node (its
  body provably computes the op), any other ``linf`` body is inlined (:func:`_check_functions`);
* ``onnx.checker`` and strict shape inference pass.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from common.errors import ModelError

MAX_MODEL_BYTES = 2**31 - 1  # protobuf's hard limit
MAX_EXTERNAL_BYTES = 16 * 2**30
ALLOWED_DTYPES = (np.float32, np.int64, np.int32, np.bool_)


@dataclass
class RawModel:
    """A parsed, validated model before binding (see module docstring for what is guaranteed)."""

    proto: onnx.ModelProto
    sha256: str
    path: Path
    opsets: dict[str, int]
    input_name: str
    input_dims: list[int | None]  # without N; all fixed
    batch_dim: int | None  # fixed batch size, or None when dynamic
    output_name: str
    num_classes: int | None
    shapes: dict[str, tuple] = field(default_factory=dict)  # inferred shapes (None = unknown dim)
    metadata: dict[str, str] = field(default_factory=dict)


def _first_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return (s[0] if s else type(e).__name__)[:300]


def _all_tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph: initializers and node attributes, recursing into subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto):
    for a in node.attribute:
        if a.HasField("t"):
            yield a.t
        yield from a.tensors
        if a.HasField("g"):
            yield from _all_tensors(a.g)
        for g in a.graphs:
            yield from _all_tensors(g)


def _safe_location(folder: Path, location: str) -> Path:
    if not location:
        raise ModelError("external data without a location")
    if "\x00" in location or os.path.isabs(location) or PureWindowsPath(location).is_absolute() \
            or PureWindowsPath(location).drive:
        raise ModelError(f"external data location {location!r} is absolute; refusing to read outside the model folder")
    parts = set(PurePosixPath(location).parts) | set(PureWindowsPath(location).parts)
    if ".." in parts:
        raise ModelError(f"external data location {location!r} contains '..'; refusing to read outside the model folder")
    target = Path(os.path.realpath(folder / location))
    if os.path.commonpath([str(target), str(folder)]) != str(folder):
        raise ModelError(f"external data location {location!r} resolves outside the model folder (symlink?)")
    if not target.is_file():
        raise ModelError(f"external data file {location!r} not found next to the model")
    return target


def _load_external(model: onnx.ModelProto, folder: Path, digest) -> None:
    total = 0
    tensors = list(_all_tensors(model.graph))
    for f in model.functions:
        for n in f.node:
            tensors.extend(_node_tensors(n))
    for t in tensors:
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        target = _safe_location(folder, info.get("location", ""))
        try:
            offset = int(info.get("offset", 0) or 0)
            size = target.stat().st_size
            length = int(info["length"]) if info.get("length") else size - offset
        except ValueError:
            raise ModelError(f"tensor {t.name!r}: malformed external data offset/length") from None
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelError(f"tensor {t.name!r}: external data range outside {target.name}")
        total += length
        if total > MAX_EXTERNAL_BYTES:
            raise ModelError("external data larger than 16 GiB; refusing")
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read(length)
        digest.update(data)
        t.raw_data = data
        del t.external_data[:]
        t.data_location = TensorProto.DEFAULT


def tensor_to_numpy(t: TensorProto) -> np.ndarray:
    """An initializer as numpy: float32 / int64 / int32 / bool only (others refused: float16,
    bfloat16 and float64 weights would change the arithmetic onnxruntime performs)."""
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:
        raise ModelError(f"tensor {t.name!r} cannot be decoded: {_first_line(e)}") from None
    if arr.dtype not in ALLOWED_DTYPES:
        raise ModelError(
            f"tensor {t.name!r} has dtype {arr.dtype}; only float32 weights (and int64/int32 shapes) are supported"
        )
    return np.array(arr, order="C", copy=True)  # (np.ascontiguousarray would make 0-d arrays 1-d)


def _check_runs_as_written(functions: list[tuple[str, str]]) -> None:
    """ModelError unless onnxruntime certainly runs each (domain, name) function's body as written.

    onnxruntime resolves a node against its own operators first: a function in the default domain,
    ``ai.onnx.ml``, ``com.microsoft``... is ignored when a schema of that name exists (its kernel
    runs) and otherwise makes the model fail, or runs, depending on the domain; and some of its
    code keys on the op name alone whatever the domain (a one-input ``foo::Mul`` aborts it). So
    only functions of domains it registers nothing in, with names no operator has, are inlined."""
    from common.runtime import is_kernel_domain, kernel_registry

    domains, names = kernel_registry()
    for domain, name in functions:
        label = f"{domain or 'ai.onnx'}::{name}"
        if is_kernel_domain(domain, domains):
            raise ModelError(
                f"model-local function {label}: onnxruntime has its own kernels in domain "
                f"{domain or 'ai.onnx'!r} and would run its kernel (or refuse the model), not this body; "
                "refusing (put the function in a custom domain)")
        if name in names:
            raise ModelError(
                f"model-local function {label} has the name of an onnxruntime operator, which onnxruntime "
                "may treat by name alone, not as this body; refusing (rename the function)")


def _check_default_opset(f: onnx.FunctionProto, opset: int) -> None:
    """A body with default-domain nodes must import the model's default-domain opset (onnxruntime
    refuses a function without the import; the inliner refuses another version)."""
    if not any(n.domain in ("", "ai.onnx") for n in f.node):
        return
    mine = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in f.opset_import}
    if mine.get("") != opset:
        raise ModelError(
            f"model-local function {f.domain}::{f.name} imports default-domain opset {mine.get('')}, "
            f"the model {opset}; refusing (onnxruntime would not run it as the model's opset defines)")


def _subgraph_nodes(nodes):
    """The nodes and, recursively, the nodes of every subgraph attribute (If, Loop, Scan bodies)."""
    for n in nodes:
        yield n
        for a in n.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _subgraph_nodes(g.node)


def _check_function_attributes(model: onnx.ModelProto, local: list[onnx.FunctionProto]) -> None:
    """ModelError unless every attribute reference of a model-local function is bound, with a
    value, at EVERY call site. onnxruntime applies a function's default attribute values
    (FunctionProto.attribute_proto) but onnx's inliner drops them (the body op then gets ITS OWN
    default: LeakyRelu alpha 0.01 where onnxruntime runs 5), and what either does with a reference
    left unbound, or bound to a name the function does not declare, is not ours to guess: so a
    function with defaults, a reference to an undeclared attribute, or a call site that does not
    set every referenced attribute is refused (docs/SOUNDNESS.md, model-local functions)."""
    refs = {}
    for f in local:
        label = f"{f.domain}::{f.name}"
        if len(f.attribute_proto):
            raise ModelError(f"model-local function {label} declares default attribute values; "
                             "refusing (onnx's inliner drops them, onnxruntime applies them)")
        refs[(f.domain, f.name)] = {a.ref_attr_name for n in _subgraph_nodes(f.node)
                                    for a in n.attribute if a.ref_attr_name}
        undeclared = sorted(refs[(f.domain, f.name)] - set(f.attribute))
        if undeclared:
            raise ModelError(f"model-local function {label} references undeclared attribute(s) "
                             f"{', '.join(undeclared)}; refusing")
    bodies = [model.graph.node] + [f.node for f in model.functions]
    for n in (n for body in bodies for n in _subgraph_nodes(body)):
        unbound = sorted(refs.get((n.domain, n.op_type), set()) - {a.name for a in n.attribute})
        if unbound:
            raise ModelError(f"a call of model-local function {n.domain}::{n.op_type} (node {n.name!r}) "
                             f"leaves attribute(s) {', '.join(unbound)} unset; refusing (set them)")


def _check_functions(model: onnx.ModelProto, opsets: dict[str, int]) -> onnx.ModelProto:
    """Inline every model-local function onnxruntime certainly runs as written, so that what is
    verified is what runs (see :func:`_check_runs_as_written`, :func:`_check_function_attributes`).

    One exception, a shortcut of the same rule: a ``linf`` function whose body is byte-identical to
    the canonical body of :mod:`common.linf_spec` stays one ``linf::LinfDist``/``LinfDistConv``
    node (that body provably computes the op, bit for bit). Any other ``linf`` body -- a third
    party's equivalent one, or a wrong one -- is inlined like any custom-domain function: onnxruntime
    runs the body, so the body is what is verified (an ℓ∞-dist body written with standard ops is
    fused back into the layer by verify/front/fuse.py; anything else is verified as what it computes)."""
    from common import linf_spec

    opset = opsets.get("", 0)
    canonical = {(f.domain, f.name) for f in model.functions
                 if f.domain == linf_spec.DOMAIN and linf_spec.is_canonical_function(f, opset)}
    inline = [f for f in model.functions if (f.domain, f.name) not in canonical]
    for f in inline:
        if f.domain == linf_spec.DOMAIN and f.name not in linf_spec.OP_TYPES:
            raise ModelError(f"unknown op linf::{f.name} (linf v1 defines {', '.join(linf_spec.OP_TYPES)})")
    for f in inline:
        _check_default_opset(f, opset)
    if inline:
        _check_runs_as_written([(f.domain, f.name) for f in inline])
        _check_function_attributes(model, inline)
    used = {n.op_type for n in _subgraph_nodes(model.graph.node) if n.domain == linf_spec.DOMAIN}
    have = {f.name for f in model.functions if f.domain == linf_spec.DOMAIN}
    missing = sorted(used - have)
    if missing:
        raise ModelError(
            f"the model uses linf::{', linf::'.join(missing)} without its function body; "
            "plain onnxruntime cannot run it (attach common.linf_spec.make_linf_functions)"
        )
    if inline:
        from onnx import inliner

        try:
            model = inliner.inline_selected_functions(model, [(f.domain, f.name) for f in inline],
                                                      exclude=False)
        except Exception as e:
            raise ModelError(f"cannot inline the model's local functions: {_first_line(e)}") from None
    return model


def _dims(vi: onnx.ValueInfoProto) -> list[int | None] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def _io(model: onnx.ModelProto) -> tuple:
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"the model must have exactly one input tensor, it has {len(inputs)}")
    if len(g.output) != 1:
        raise ModelError(f"the model must have exactly one output tensor, it has {len(g.output)}")
    inp, out = inputs[0], g.output[0]
    for vi, what in ((inp, "input"), (out, "output")):
        if not vi.type.HasField("tensor_type") or vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise ModelError(f"the model {what} {vi.name!r} must be a float32 tensor")
    dims = _dims(inp)
    if dims is None or len(dims) < 2 or any(d is None or d <= 0 for d in dims[1:]):
        raise ModelError(f"the model input {inp.name!r} must have shape [N, ...] with fixed positive dims after N, got {dims}")
    odims = _dims(out)
    if odims is not None and len(odims) != 2:
        raise ModelError(f"the model output {out.name!r} must have shape [N, K], got rank {len(odims)}")
    for vi, d in ((inp, dims), (out, odims)):  # a fixed batch size must be positive (0 = no row fits)
        if d and d[0] is not None and d[0] <= 0:
            raise ModelError(f"the batch dimension of {vi.name!r} is declared {d[0]}: it must be "
                             "positive or dynamic")
    k = odims[1] if odims else None
    return inp.name, [int(d) for d in dims[1:]], dims[0], out.name, (int(k) if k else None)


def load_proto(path: str | os.PathLike) -> tuple[onnx.ModelProto, str]:
    """(the file's ModelProto with every external tensor read into it safely, the model's identity).

    The identity is THE definition of a model's identity (``model_sha256`` in certificates and
    witness files, used by certify, check, attack, audit): sha256 of the file bytes followed by
    each external-data chunk in tensor order, exactly as read here (so a change of any weight, in
    the file or in its external data, changes it). ModelError on bad input."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelError(f"not a file: {p}")
    size = p.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"model file {p.name} is larger than 2 GiB")
    data = p.read_bytes()
    digest = hashlib.sha256(data)
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:
        raise ModelError(f"{p.name} is not a valid ONNX file: {_first_line(e)}") from None
    if len(model.graph.sparse_initializer):
        raise ModelError("sparse initializers are not supported")
    _load_external(model, Path(os.path.realpath(p.parent)), digest)
    return model, digest.hexdigest()


def model_identity(path: str | os.PathLike) -> str:
    """The model's identity (sha256 hex, see :func:`load_proto`) as the file reads now."""
    return load_proto(path)[1]


def read_model(path: str | os.PathLike) -> RawModel:
    """Parse and validate an ONNX file safely (see the module docstring). ModelError on bad input."""
    p = Path(path)
    model, sha = load_proto(p)
    opsets = {("" if o.domain == "ai.onnx" else o.domain): int(o.version) for o in model.opset_import}
    if "linf" in opsets and opsets["linf"] != 1:
        raise ModelError(f"linf domain version {opsets['linf']} is not supported (only 1)")
    model = _check_functions(model, opsets)
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        raise ModelError(f"onnx.checker rejects {p.name}: {_first_line(e)}") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:
        raise ModelError(f"shape inference fails on {p.name}: {_first_line(e)}") from None
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        d = _dims(vi)
        if d is not None:
            shapes[vi.name] = tuple(d)
    name, dims, batch, out, k = _io(model)
    meta = {m.key: m.value for m in model.metadata_props}
    return RawModel(model, sha, p, opsets, name, dims, batch, out, k, shapes, meta)
