"""A differentiable torch module evaluating an imported ONNX graph (any model the verifier reads).

``TorchGraph.from_onnx(path)`` builds the module; ``module(x)`` returns the logits in float32 with
ONNX semantics. ``module.p_grad`` (default ``inf``) picks the gradient of the ℓ∞-dist layers
(linf::LinfDist / LinfDistConv and ReduceMax over Abs): ``inf`` is the exact subgradient, a finite
value the smoothed ℓp surrogate. The forward value never depends on ``p_grad``: success is always
judged on the exact model (and then replayed in onnxruntime, see :mod:`verify.attack.replay`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from verify.attack.onnx_graph import OnnxGraph, read_onnx_graph
from verify.attack.torch_ops import OPS, OpContext, supported_ops
from common.errors import ModelError

__all__ = ["TorchGraph"]


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.dtype == np.float64:
        return torch.from_numpy(a.copy())
    if a.dtype.kind == "f":
        return torch.from_numpy(a.astype(np.float32, copy=True))
    if a.dtype == np.bool_:
        return torch.from_numpy(a.copy())
    return torch.from_numpy(a.astype(np.int64, copy=True))


class TorchGraph(nn.Module):
    """Evaluate an :class:`OnnxGraph` with torch ops; gradients flow to the graph input."""

    def __init__(self, graph: OnnxGraph, p_grad: float = math.inf):
        super().__init__()
        missing = sorted({f"{n.domain}::{n.op_type}" if n.domain else n.op_type
                          for n in graph.nodes if (n.domain, n.op_type) not in OPS})
        if missing:
            raise ModelError(
                f"the attack cannot evaluate op(s) {', '.join(missing)}; supported: {', '.join(supported_ops())}"
            )
        self.graph = graph
        self.p_grad = p_grad
        self._consts = {k: _to_tensor(v) for k, v in graph.constants.items()}
        self._abs_values = {o for n in graph.nodes if n.op_type == "Abs" and n.domain == "" for o in n.outputs}
        self.has_linf_layers = any(
            n.domain == "linf" or (n.op_type == "ReduceMax" and n.inputs[0] in self._abs_values)
            for n in graph.nodes
        )

    @classmethod
    def from_onnx(cls, path: str | Path, p_grad: float = math.inf) -> "TorchGraph":
        """Read ``path`` (safely, see :func:`read_onnx_graph`) and build the module."""
        return cls(read_onnx_graph(path), p_grad)

    @property
    def input_shape(self) -> tuple:
        return self.graph.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the rows of ``x``. A model with a fixed batch size B only ever sees batches of
        exactly B rows (a short last chunk padded with copies of its last row, dropped again), as
        in onnxruntime (common.runtime.ort_logits) and the verifier (VerifiedModel.per_chunk)."""
        b = self.graph.batch_size
        if not b or x.shape[0] == b:
            return self._forward(x)
        outs = []
        for s in range(0, x.shape[0], b):
            xb = x[s:s + b]
            k = xb.shape[0]
            if k < b:
                xb = torch.cat([xb, xb[-1:].expand(b - k, *xb.shape[1:])])
            outs.append(self._forward(xb)[:k])
        return torch.cat(outs) if outs else self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = OpContext(p_grad=self.p_grad, abs_values=self._abs_values)
        env: dict[str, torch.Tensor] = dict(self._consts)
        env[self.graph.input_name] = x
        for node in self.graph.nodes:
            args = [env[i] if i else None for i in node.inputs]
            while args and args[-1] is None:
                args.pop()
            fn = OPS[(node.domain, node.op_type)]
            try:
                if node.op_type == "ReduceMax":
                    out = fn(ctx, node.attrs, *args, name=node.inputs[0])
                else:
                    out = fn(ctx, node.attrs, *args)
            except (RuntimeError, NotImplementedError, KeyError, IndexError, ValueError) as e:
                raise ModelError(f"attack cannot evaluate node {node.name or node.op_type}: {e}") from None
            outs = out if isinstance(out, tuple) else (out,)
            for name, val in zip(node.outputs, outs):
                env[name] = val
        return env[self.graph.output_name]

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Logits (float32 numpy) of the exact model for numpy inputs, in batches, no gradient."""
        outs = [self(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32))).numpy()
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
