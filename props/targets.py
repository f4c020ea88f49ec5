"""One interface over the things whose Lipschitz constant we check: ONNX files, torch modules, callables.

`as_target(model, input_shape=None)` returns a `Target`:
- `evaluate(x)`: float32 [B, *input_shape] → float32 [B, K], the model's own float evaluation
  (onnxruntime for ONNX files, the module in eval mode for torch).
- `enclose(x)`: (lo, hi) float64 [B, K] with lo ≤ exact(x) ≤ hi, the exact real-number output of the
  model's function at the float32 input x, when `rigorous` is True:
  ONNX → the verifier's interval bounds on the degenerate box [x, x] (`verify.front.model`);
  torch → evaluate ± the layer-by-layer float error bound of `props.floaterr`.
  When no rigorous bound exists (an op the verifier cannot bound, an unknown torch module, a plain
  callable) `rigorous` is False and the enclosure is evaluate ± 1e-4·(1 + |y|max), a heuristic.
- `surrogate(p)`: a context manager yielding a differentiable torch function for gradients (p = the
  ℓp smoothing of ℓ∞-dist layers, math.inf = exact subgradients), or None when there is none.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from props.floaterr import NoErrorBound, forward_with_error
from common.errors import ModelError

HEURISTIC_REL = 1e-4


@dataclass
class Target:
    """A model reduced to float32 arrays in, float32 logits out (see the module docstring)."""

    input_shape: tuple[int, ...]
    evaluate: Callable[[np.ndarray], np.ndarray]
    enclose: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    rigorous: bool
    description: str
    surrogate: Callable[[float], contextlib.AbstractContextManager] | None = None
    notes: list[str] = field(default_factory=list)
    n_params: int = 0  # number of weights (decides threading in the search)
    grad_cost: float = 3.0  # one surrogate forward+backward, in single-input exact evaluations
    evaluations: int = 0  # set by the last search on this target


def _heuristic_enclose(evaluate):
    def enclose(x):
        y = evaluate(x).astype(np.float64)
        tol = HEURISTIC_REL * (1.0 + np.abs(y).max(axis=1, keepdims=True))
        return np.nextafter(y - tol, -np.inf), np.nextafter(y + tol, np.inf)
    return enclose


def _flat(y) -> np.ndarray:
    y = np.asarray(y, dtype=np.float32)
    return y.reshape(y.shape[0], -1)


# ---------------------------------------------------------------- torch modules


def _module_input_shape(m: nn.Module) -> tuple[int, ...] | None:
    shape = getattr(m, "input_shape", None)
    if isinstance(shape, (tuple, list)) and all(isinstance(v, int) for v in shape):
        return tuple(shape)
    cfg = getattr(m, "config", None)
    if cfg is not None and hasattr(cfg, "input_shape"):
        return tuple(int(v) for v in cfg.input_shape)
    members = getattr(m, "members", None)
    if members is not None and len(members):
        return _module_input_shape(members[0])
    if isinstance(m, nn.Sequential) and len(m):
        return _module_input_shape(m[0])
    if hasattr(m, "in_features"):
        return (int(m.in_features),)
    return None


def _mode_dependent(m: nn.Module) -> bool:
    """Layers that compute something else in training mode (batch statistics, random masks)."""
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.Dropout)) or type(m).__name__ == "MeanShift"


def _set_inf_p(module: nn.Module, p: float) -> list[tuple[nn.Module, float]]:
    """Set p on every submodule whose `p` is ∞ (finite-p layers keep theirs); return the undo list."""
    changed = []
    for sub in module.modules():
        val = getattr(sub, "p", None)
        if isinstance(val, float) and math.isinf(val) and hasattr(sub, "weight"):
            changed.append((sub, val))
            sub.p = float(p)
    return changed


def _torch_target(module: nn.Module, input_shape) -> Target:
    if any(sub.training and _mode_dependent(sub) for sub in module.modules()):
        raise ModelError("check the model in eval mode (call model.eval()): training-mode layers "
                         "such as MeanShift or Dropout depend on the batch")
    shape = tuple(input_shape) if input_shape is not None else _module_input_shape(module)
    if shape is None:
        raise ModelError(f"cannot infer the input shape of {type(module).__name__}; pass input_shape=")
    try:
        dtype = next(module.parameters()).dtype
    except StopIteration:
        dtype = torch.float32

    def evaluate(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _flat(module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dtype)).float())

    notes: list[str] = []
    rigorous = dtype == torch.float32

    def enclose(x: np.ndarray):
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            y_ref = module(xt)
        y, err = forward_with_error(module, xt)
        if not torch.equal(y, y_ref):
            raise NoErrorBound("the error rules do not reproduce the module's output bit for bit")
        yf = y.reshape(y.shape[0], -1).double().numpy()
        e = err.numpy()[:, None] * (1 + 1e-12) + 2.0**-1074
        # one more float64 step outwards: yf ± e is itself rounded
        return np.nextafter(yf - e, -np.inf), np.nextafter(yf + e, np.inf)

    if rigorous:
        try:
            enclose(np.zeros((1,) + shape, np.float32))
        except NoErrorBound as e:
            rigorous = False
            notes.append(f"no rigorous float error bound: {e}")
    if not rigorous:
        enclose = _heuristic_enclose(evaluate)

    @contextlib.contextmanager
    def surrogate(p: float):
        def f(xt):  # smoothed only while building the graph: evaluate() always sees the exact model
            undo = _set_inf_p(module, p) if not math.isinf(p) else []
            try:
                return module(xt.to(dtype)).float().reshape(xt.shape[0], -1)
            finally:
                for sub, val in undo:
                    sub.p = val
        yield f

    n_params = sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers())
    return Target(shape, evaluate, enclose, rigorous, f"torch module {type(module).__name__}",
                  surrogate, notes, n_params)


# ---------------------------------------------------------------- ONNX files


def _onnx_target(path: Path, input_shape) -> Target:
    from verify.front.loader import load_proto
    from common.runtime import fixed_batch, ort_session

    proto, _ = load_proto(path)  # safe read: external data only inside the model's folder
    sess = ort_session(path, threads=1)
    declared = tuple(sess.get_inputs()[0].shape[1:])
    shape = tuple(input_shape) if input_shape is not None else declared
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelError(f"{path.name}: input shape {shape} is not fixed; pass input_shape=")
    in_name = sess.get_inputs()[0].name
    fixed = fixed_batch(sess)  # a fixed batch size: pad every chunk to it
    chunk = fixed or 1024

    def run(xb: np.ndarray) -> np.ndarray:
        k = len(xb)
        if fixed and k < fixed:
            xb = np.concatenate([xb, np.repeat(xb[-1:], fixed - k, axis=0)])
        try:
            return sess.run(None, {in_name: np.ascontiguousarray(xb, dtype=np.float32)})[0][:k]
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{path.name}: onnxruntime failed: {str(e).splitlines()[0]}") from None

    def evaluate(x: np.ndarray) -> np.ndarray:
        return _flat(np.concatenate([run(x[i:i + chunk]) for i in range(0, len(x), chunk)]))

    notes: list[str] = []
    enclose, rigorous = _heuristic_enclose(evaluate), False
    vm = None
    try:
        from verify.front.model import load_model
        vm = load_model(path)

        def enclose(x: np.ndarray):  # noqa: F811 - the rigorous one replaces the heuristic
            lo, hi = vm.interval(x, x)
            return (np.asarray(lo, np.float64).reshape(len(x), -1),
                    np.asarray(hi, np.float64).reshape(len(x), -1))
        rigorous = True
    except ImportError:
        notes.append("the verifier (verify.front.model) is not available: float tolerance is heuristic")
    except ModelError as e:
        notes.append(f"the verifier cannot bound this model ({e}): float tolerance is heuristic")

    surrogate = None
    try:
        from verify.attack.torch_graph import TorchGraph
        if vm is None:
            raise ModelError("the verifier cannot read it")
        tg = TorchGraph(vm)
        with torch.no_grad():
            tg(torch.zeros((2,) + shape))  # probe: the graph runs on the data's shape

        @contextlib.contextmanager
        def surrogate(p: float):
            old = tg.p_grad
            tg.p_grad = float(p)
            try:
                yield lambda xt: tg(xt).reshape(xt.shape[0], -1)
            finally:
                tg.p_grad = old
    except (ImportError, ModelError, RuntimeError) as e:
        surrogate = None
        notes.append(f"no differentiable evaluation ({e}): gradient-free search")
    n_params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    # onnxruntime is fast and the torch evaluation of the graph with an ℓp backward is slow
    return Target(shape, evaluate, enclose, rigorous, f"ONNX file {path.name}", surrogate, notes, n_params,
                  grad_cost=10.0)


# ---------------------------------------------------------------- entry point


def as_target(model, input_shape=None) -> Target:
    """Wrap an ONNX path, a torch module or a callable on float32 arrays (needs input_shape)."""
    if isinstance(model, Target):
        return model
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"no such model file: {path}")
        return _onnx_target(path, input_shape)
    if isinstance(model, nn.Module):
        return _torch_target(model, input_shape)
    if callable(model):
        if input_shape is None:
            raise ModelError("a plain callable needs input_shape=")

        def evaluate(x: np.ndarray) -> np.ndarray:
            return _flat(model(np.ascontiguousarray(x, dtype=np.float32)))

        return Target(tuple(input_shape), evaluate, _heuristic_enclose(evaluate), False,
                      f"callable {getattr(model, '__name__', type(model).__name__)}", None,
                      ["plain callable: float tolerance is heuristic"])
    raise ModelError(f"cannot check a {type(model).__name__}: pass an ONNX path, a torch module or a callable")
