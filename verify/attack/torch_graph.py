"""A differentiable torch module evaluating the verifier's IR of a model (any model it reads).

``TorchGraph.from_onnx(path)`` loads the file with THE front-end (``verify.front.model.load_model``: one
safe reader, one external-data check, one model identity ``sha256``) and evaluates the bound ops of
its :class:`verify.front.graph.Graph` in order, each through its own ``Op.torch_forward`` (verify/ops/),
with the graph's constants as tensors. ``module(x)`` returns the logits in float32 with ONNX
semantics. ``module.p_grad`` (default ``inf``) picks the gradient of the ℓ∞-dist layers
(linf::LinfDist / LinfDistConv, and the standard-op ℓ∞-dist layers the loader fuses into LinfDist):
``inf`` is the exact subgradient, a finite value the smoothed ℓp surrogate. The forward value never
depends on ``p_grad``: success is always judged on the exact model (and then replayed in
onnxruntime, see :mod:`verify.attack.replay`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.errors import ModelError
from verify.ops._torch import as_tensor
from verify.ops.base import Op, TorchContext

__all__ = ["TorchGraph"]

#: what torch raises on operands an op did not foresee: a model we cannot run, never a traceback
_TORCH_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


class TorchGraph(nn.Module):
    """Evaluate a :class:`verify.front.model.VerifiedModel`'s graph with torch; gradients reach the input."""

    def __init__(self, model, p_grad: float = math.inf):
        super().__init__()
        missing = sorted({op.describe() for op in model.graph.nodes
                          if type(op).torch_forward is Op.torch_forward})
        if missing:
            raise ModelError(f"the attack has no torch evaluation of op(s) {', '.join(missing)}")
        self.model = model
        self.p_grad = p_grad
        self._consts = {k: as_tensor(v) for k, v in model.graph.constants.items()}
        #: the graph has ℓ∞-dist layers (ours, or standard-op ones fused by the loader): the attack
        #: schedule then uses the smoothed surrogate gradient (verify.attack.runner.schedule)
        self.has_linf_layers = any(op.domain == "linf" for op in model.graph.nodes)

    @classmethod
    def from_onnx(cls, path: str | Path, p_grad: float = math.inf) -> TorchGraph:
        """Load ``path`` with the verifier's front-end (ModelError on bad input) and build the module."""
        from verify.front.model import load_model

        return cls(load_model(path), p_grad)

    @property
    def input_shape(self) -> tuple:
        return self.model.input_shape

    @property
    def sha256(self) -> str:
        return self.model.sha256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the rows of ``x``. A model with a fixed batch size B only ever sees batches of
        exactly B rows (a short last chunk padded with copies of its last row, dropped again), as
        in onnxruntime (common.runtime.ort_logits) and the verifier (VerifiedModel.per_chunk)."""
        b = self.model.batch_size
        if not b or x.shape[0] == b:
            return self._forward(x)
        outs = []
        for s in range(0, x.shape[0], b):
            xb = x[s:s + b]
            k = xb.shape[0]
            if k < b:
                xb = torch.cat([xb, xb[-1:].expand(b - k, *xb.shape[1:])])
            outs.append(self._forward(xb)[:k])
        return torch.cat(outs) if outs else x.new_zeros((0, self.model.num_classes))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = TorchContext(p_grad=self.p_grad)
        g = self.model.graph
        env: dict[str, torch.Tensor] = {g.input_name: x}
        for op in g.nodes:
            args = [None if i == "" else (self._consts[i] if i in self._consts else env[i]) for i in op.inputs]
            try:
                out = op.torch_forward(ctx, *args)
            except _TORCH_ERRORS as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise op.fail(f"the attack cannot evaluate it: {first}") from None
            for name, val in zip(op.outputs, out if isinstance(out, tuple) else (out,)):
                env[name] = val
        return env[g.output_name]

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Logits (float32 numpy) of the exact model for numpy inputs, in batches, no gradient."""
        outs = [self(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))).numpy()
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.model.num_classes), np.float32)
