"""export: nets/ models and checkpoints -> one self-contained ONNX file (linf domain v1).

Public API: `export_model(model, path, *, dataset, eps_train, input_shape, metadata, opset, check)`,
`export_checkpoint(ckpt_dir, out_path, *, opset, check)`, `build_onnx(model, ...)` (no file),
`read_metadata(model_proto)`. Op spec: docs/onnx-ops.md; canonical bodies: common.linf_spec.
Optional fast path (same file, needs onnxruntime-extensions): `export.fast_ort.fast_session(path)`.
"""

from export.metadata import read_metadata
from export.onnx_export import build_onnx, export_checkpoint, export_model

__all__ = ["build_onnx", "export_checkpoint", "export_model", "read_metadata"]
