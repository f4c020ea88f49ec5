"""Self-check of an exported model: onnx full checker, strict shape inference, onnxruntime parity.

`check_exported` raises ModelError (one line) unless: `onnx.checker.check_model(full_check=True)`
passes, `infer_shapes(strict_mode=True)` passes, plain onnxruntime (CPU, no custom library; the
pinned session of common/runtime.py that theorem (b) is about) runs the model, and its logits on
random inputs in [0, 1] match the torch model's (eval mode, p = ∞) within `rtol · max(1, max|logits|)`
with the same argmax wherever the torch top-2 gap exceeds that tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from common.errors import ModelError
from common.runtime import ort_session

DEFAULT_RTOL = 1e-5


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """The torch model's logits in eval mode (training flag restored afterwards)."""
    was = model.training
    model.eval()
    try:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()
    finally:
        model.train(was)


def compare_logits(got: np.ndarray, want: np.ndarray, rtol: float = DEFAULT_RTOL) -> str | None:
    """None when ``got`` matches ``want`` (tolerance and argmax as in the module doc), else why not."""
    if got.shape != want.shape:
        return f"shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    tol = rtol * scale
    err = float(np.abs(got.astype(np.float64) - want).max(initial=0.0))
    if not err <= tol:
        return f"max abs error {err:.3g} > {tol:.3g}"
    srt = np.sort(want, axis=1)
    clear = (srt[:, -1] - srt[:, -2]) > 2 * tol if want.shape[1] > 1 else np.ones(len(want), bool)
    bad = clear & (got.argmax(1) != want.argmax(1))
    if bad.any():
        return f"argmax differs on {int(bad.sum())} of {len(want)} inputs"
    return None


def check_exported(model_proto: onnx.ModelProto, model: nn.Module | None = None, *, n: int = 8,
                   seed: int = 0, rtol: float = DEFAULT_RTOL) -> None:
    """Raise ModelError unless the exported proto is valid and matches ``model`` (module doc)."""
    try:
        onnx.checker.check_model(model_proto, full_check=True)
        onnx.shape_inference.infer_shapes(model_proto, strict_mode=True, check_type=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelError(f"exported model fails the ONNX checker: {str(e).splitlines()[0]}") from None
    shape = [d.dim_value for d in model_proto.graph.input[0].type.tensor_type.shape.dim[1:]]
    x = np.random.default_rng(seed).random((n, *shape), dtype=np.float32)
    try:
        got = ort_session(model_proto, threads=1).run(None, {model_proto.graph.input[0].name: x})[0]
    except Exception as e:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot run the exported model: {str(e).splitlines()[0]}") from None
    if model is None:
        return
    why = compare_logits(got, torch_logits(model, x), rtol)
    if why:
        raise ModelError(f"exported model disagrees with the torch model: {why}")
