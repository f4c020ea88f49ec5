"""Export nets/ models and checkpoints to one self-contained ONNX file (linf domain v1).

`export_model` builds the graph directly (export.graph), attaches the canonical function bodies of
the linf ops it uses (common.linf_spec, so plain onnxruntime runs the file), writes metadata_props
(export.metadata), optionally self-checks (export.check), and writes the file atomically: a temp file
in the destination folder, then os.replace. No external data. The ONNX file -- with the mean-shift
fold rounded to float32 -- is the model the verifier certifies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from torch import nn

from export.graph import INPUT_NAME, OUTPUT_NAME, GraphBuilder, emit_ensemble, emit_net
from export.metadata import build_metadata
from common import linf_spec
from common.errors import ModelError
from common.outputs import write_bytes_atomic

MAX_BYTES = 2_000_000_000  # protobuf's 2 GB limit: we never write external data


def _ensemble_parts(model: nn.Module):
    """(members, weights float32, mode) of a ConvexEnsemble, or None for a single net."""
    members = getattr(model, "members", None)
    if members is None:
        return None
    w = getattr(model, "weights", None)
    if callable(w):
        w = w()
    if w is None:
        raise ModelError(f"{type(model).__name__} has members but no weights")
    weights = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, np.float64).ravel()
    if len(weights) != len(members):
        raise ModelError(f"ensemble has {len(members)} members but {len(weights)} weights")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ModelError("ensemble weights must be finite and >= 0 (a convex combination)")
    mode = str(getattr(model, "mode", "fusion"))
    return list(members), weights.astype(np.float32), mode


def _input_shape(model: nn.Module, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        net = next(iter(model.members)) if getattr(model, "members", None) is not None else model
        cfg = getattr(net, "config", None)
        if cfg is None or not hasattr(cfg, "input_shape"):
            raise ModelError("input_shape is needed: the model has no .config")
        input_shape = cfg.input_shape
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape}")
    return shape


def build_onnx(model: nn.Module, *, input_shape=None, opset: int = linf_spec.DEFAULT_OPSET,
               metadata: Mapping[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX ModelProto of ``model`` (eval-mode semantics at p = ∞), without writing it."""
    shape = _input_shape(model, input_shape)
    g = GraphBuilder()
    parts = _ensemble_parts(model)
    if parts is None:
        logits = emit_net(g, model, INPUT_NAME, "")
    else:
        logits = emit_ensemble(g, *parts, INPUT_NAME)
    # the last node writes the graph output name directly
    last = g.nodes[-1]
    if last.output[0] != logits:
        raise ModelError("internal: the last node does not produce the logits")
    last.output[0] = OUTPUT_NAME
    num_classes = _num_classes(model, parts)
    graph = h.make_graph(
        g.nodes, "linfverify",
        [h.make_tensor_value_info(INPUT_NAME, T.FLOAT, ["N", *shape])],
        [h.make_tensor_value_info(OUTPUT_NAME, T.FLOAT, ["N", num_classes])],
        g.inits,
    )
    used = [t for t in linf_spec.OP_TYPES if t in g.linf_ops]
    opsets = [h.make_opsetid("", opset)]
    if used:
        opsets.append(h.make_opsetid(linf_spec.DOMAIN, linf_spec.DOMAIN_VERSION))
    m = h.make_model(graph, opset_imports=opsets, functions=linf_spec.make_linf_functions(opset, used),
                     producer_name="linfverify")
    m.ir_version = max(9, h.find_min_ir_version_for(opsets, ignore_unknown=True))
    if metadata:
        m.producer_version = str(metadata.get("producer_version", ""))
        h.set_model_props(m, dict(metadata))
    return m


def _num_classes(model: nn.Module, parts) -> int:
    net = model if parts is None else parts[0][0]
    cfg = getattr(net, "config", None)
    if cfg is not None:
        return int(cfg.num_classes)
    head = getattr(net, "head", None)
    last = list(head.children())[-1] if head is not None else list(net.trunk.children())[-1]
    return int(getattr(last, "out_features"))


def write_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder + os.replace."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"output path {path} is a directory")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelError(f"output folder {folder} does not exist")
    return write_bytes_atomic(path, data)


def export_model(model: nn.Module, path: str | os.PathLike, *, dataset: str = "unknown",
                 eps_train: float | None = None, input_shape=None,
                 metadata: Mapping[str, Any] | None = None, opset: int = linf_spec.DEFAULT_OPSET,
                 check: bool = True) -> onnx.ModelProto:
    """Export ``model`` (a nets LinfDistNet or ConvexEnsemble, at p = ∞) to ``path``; returns the proto.

    ``metadata`` adds/overrides metadata_props (values JSON-encoded unless already str).
    With ``check`` (default) the file must pass onnx's full checker, strict shape inference and
    match the torch model in onnxruntime on random inputs (export.check); else ModelError and no file.
    """
    meta = build_metadata(model, dataset=dataset, eps_train=eps_train, extra=metadata)
    m = build_onnx(model, input_shape=input_shape, opset=opset, metadata=meta)
    data = m.SerializeToString()
    if len(data) >= MAX_BYTES:
        raise ModelError(f"model is {len(data) / 1e9:.1f} GB; ONNX files without external data must be < 2 GB")
    if check:
        from export.check import check_exported

        check_exported(m, model)
    write_atomic(data, path)
    return m


def export_checkpoint(ckpt_dir: str | os.PathLike, out_path: str | os.PathLike, *,
                      opset: int = linf_spec.DEFAULT_OPSET, check: bool = True) -> onnx.ModelProto:
    """Load a nets checkpoint directory (EMA weights) and export it with its metadata."""
    from nets.checkpoint import load_checkpoint

    model, meta = load_checkpoint(ckpt_dir)
    model.eval()
    meta = dict(meta or {})
    extra = {}
    if "input_range" in meta:
        extra["input_range"] = meta["input_range"]
    return export_model(model, out_path, dataset=str(meta.get("dataset", "unknown")),
                        eps_train=meta.get("eps_train"), metadata=extra, opset=opset, check=check)
