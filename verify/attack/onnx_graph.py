"""Read an ONNX file into a plain node list that :mod:`verify.attack.torch_graph` can evaluate.

Guarantees:
- the file is read by the verifier's loader (``verify.front.loader.load_proto``: ``onnx`` only, nothing
  unpickled, external data only inside the model's folder, else :class:`ModelError`), and
  ``sha256`` is the one model identity (``verify.front.loader.model_identity``);
- model-local functions are inlined, except the ``linf`` domain ops (LinfDist, LinfDistConv),
  which stay as single nodes so the attack can evaluate (and smooth) them directly;
- the result lists nodes in the file's order (ONNX requires topological order) with attributes
  decoded to Python values and initializers / Constant outputs as numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from common.errors import ModelError

__all__ = ["GraphNode", "OnnxGraph", "read_onnx_graph", "LINF_DOMAIN", "LINF_OPS"]

LINF_DOMAIN = "linf"
LINF_OPS = ("LinfDist", "LinfDistConv")


@dataclass(frozen=True)
class GraphNode:
    """One ONNX node: op_type, domain ("" = default), input/output value names, attributes."""

    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class OnnxGraph:
    """A topologically ordered graph: nodes, constant tensors, one input and one output."""

    nodes: list[GraphNode]
    constants: dict[str, np.ndarray]
    input_name: str
    input_shape: tuple  # without the batch dimension; symbolic dims as None
    output_name: str
    metadata: dict[str, str]
    sha256: str
    batch_size: int | None = None  # the input's fixed batch dimension (None = dynamic)


def _decode_attr(attr: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    return value


def _dims(value_info: onnx.ValueInfoProto) -> tuple:
    shape = value_info.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in shape.dim)


def read_onnx_graph(path: str | Path) -> OnnxGraph:
    """Load ``path`` safely and return its :class:`OnnxGraph` (raises ModelError on bad input)."""
    from verify.front.loader import load_proto

    model, sha = load_proto(path)  # the verifier's safe reader and the one model identity
    keep = [(f.domain, f.name) for f in model.functions if f.domain == LINF_DOMAIN and f.name in LINF_OPS]
    if len(keep) != len(model.functions):
        try:
            model = onnx.inliner.inline_selected_functions(model, keep, exclude=True)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"cannot inline the model's local functions: {e}") from None
    g = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in constants]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ModelError(f"expected one graph input and one output, got {len(inputs)} and {len(g.output)}")
    nodes = []
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            attr = n.attribute[0]
            constants[n.output[0]] = np.asarray(_decode_attr(attr))
            continue
        nodes.append(
            GraphNode(
                op_type=n.op_type,
                domain="" if n.domain == "ai.onnx" else n.domain,
                inputs=tuple(n.input),
                outputs=tuple(n.output),
                attrs={a.name: _decode_attr(a) for a in n.attribute},
                name=n.name,
            )
        )
    return OnnxGraph(
        nodes=nodes,
        constants=constants,
        input_name=inputs[0].name,
        input_shape=_dims(inputs[0])[1:],
        output_name=g.output[0].name,
        metadata={p.key: p.value for p in model.metadata_props},
        sha256=sha,
        batch_size=_fixed(_dims(inputs[0])),
    )


def _fixed(dims: tuple) -> int | None:
    """The fixed batch size of an input of shape ``dims`` (a positive first dim), else None."""
    n0 = dims[0] if dims else None
    return n0 if isinstance(n0, int) and n0 > 0 else None
