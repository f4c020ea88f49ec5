"""Falsify ℓ∞ Lipschitz claims: `search_lipschitz`, `check_lipschitz`, `replay`.

Semantics. A model's float32 weights define a function f on real inputs; "f is L-Lipschitz in ℓ∞ on
the domain" means ‖f(x) − f(x′)‖∞ ≤ L·‖x − x′‖∞ for all x, x′ in [lo, hi]^D. The search
(`props.search`) finds pairs with a large float ratio; each reported pair is then judged rigorously:

    ratio_lower = max_k max(lo_k(x) − hi_k(x′), lo_k(x′) − hi_k(x)) / ‖x − x′‖∞

where [lo(x), hi(x)] encloses the EXACT output f(x) at the float32 input x (see `props.targets`:
the verifier's outward-rounded interval bounds for ONNX files, the float error bound of
`props.floaterr` for torch modules; e.g. for a pure ℓ∞-dist net of depth n the half-width is
≤ Σ_layers u·(|dist| + |y|) ≈ 2n·2⁻²⁴·|y|max). The numerator is rounded down and the denominator up,
so ratio_lower ≤ the exact ratio of f at that pair. `check_lipschitz` fails only when
ratio_lower > L: a true L-Lipschitz model can never fail (no false alarms), whatever the float
error, as long as the enclosure is rigorous (`result.rigorous`). Where it is not (a plain callable,
an op the verifier cannot bound, an unknown torch module) the enclosure is a heuristic ±1e-4·scale,
and the failure message says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from props.floaterr import NoErrorBound
from props.search import Pair, search_pairs
from props.targets import Target, as_target
from common.errors import DataError, ModelError

DEFAULT_BUDGET = 4096
_JUDGED = 8
_ROUND = 2.0**-52


class LipschitzViolation(AssertionError):
    """A pair (x, x′) with ‖f(x) − f(x′)‖∞ > L·‖x − x′‖∞ for the exact model; `.result` has it."""

    def __init__(self, message: str, result: "LipschitzSearchResult"):
        super().__init__(message)
        self.result = result


@dataclass
class LipschitzSearchResult:
    """The best pair found. `ratio`: its float ratio ‖F(x) − F(x′)‖∞/‖x − x′‖∞ (F = float evaluation);
    `ratio_lower`: a lower bound of the exact model's ratio there (rigorous when `rigorous`);
    `x`, `x_prime`: float32 arrays of the input shape (no batch axis)."""

    ratio: float
    ratio_lower: float
    x: np.ndarray
    x_prime: np.ndarray
    output_index: int
    distance: float
    float_error: float
    rigorous: bool
    method: str
    evaluations: int
    model: str
    domain: tuple[float, float]
    notes: list[str] = field(default_factory=list)
    counterexample_path: str | None = None

    def exceeds(self, L: float) -> bool:
        """True when the exact model provably (if `rigorous`) has ratio > L at (x, x′)."""
        return self.ratio_lower > float(L)

    def to_dict(self) -> dict:
        """JSON-serialisable summary (inputs as float lists)."""
        d = asdict(self)
        d["x"], d["x_prime"] = self.x.ravel().tolist(), self.x_prime.ravel().tolist()
        d["domain"] = list(self.domain)
        return d


def judge_pair(target: Target, x: np.ndarray, x_prime: np.ndarray) -> tuple[float, float, int, bool]:
    """(ratio_lower, float_error, output_index, rigorous) for one pair of flat float32 inputs."""
    xs = np.stack([x, x_prime]).astype(np.float32).reshape((2,) + target.input_shape)
    rigorous = target.rigorous
    try:
        lo, hi = target.enclose(xs)
    except (NoErrorBound, ModelError):  # no rigorous enclosure here: say so, use the heuristic
        from props.targets import _heuristic_enclose
        lo, hi = _heuristic_enclose(target.evaluate)(xs)
        rigorous = False
    gap = np.maximum(lo[0] - hi[1], lo[1] - hi[0])  # lower bound of |f_k(x) − f_k(x′)| per k
    k = int(np.argmax(gap))
    num = float(gap[k]) * (1 - _ROUND) if gap[k] > 0 else 0.0
    den = float(np.abs(x.astype(np.float64) - x_prime.astype(np.float64)).max()) * (1 + _ROUND)
    err = float((hi[0, k] - lo[0, k]) / 2 + (hi[1, k] - lo[1, k]) / 2)
    return (num / den * (1 - _ROUND) if den > 0 else 0.0), err, k, rigorous


def _result(target: Target, pair: Pair, evaluations: int, domain) -> LipschitzSearchResult:
    lower, err, k, rigorous = judge_pair(target, pair.x, pair.x_prime)
    dist = float(np.abs(pair.x.astype(np.float64) - pair.x_prime.astype(np.float64)).max())
    return LipschitzSearchResult(
        ratio=pair.ratio, ratio_lower=lower, x=pair.x.reshape(target.input_shape).astype(np.float32),
        x_prime=pair.x_prime.reshape(target.input_shape).astype(np.float32),
        output_index=k if lower > 0 else pair.output_index, distance=dist, float_error=err,
        rigorous=rigorous, method=pair.method, evaluations=evaluations, model=target.description,
        domain=(float(domain[0]), float(domain[1])), notes=list(target.notes))


@contextlib.contextmanager
def _few_threads(target: Target, small: int = 5_000_000):
    """One torch thread for models under `small` weights (the search's batches are small; measured on
    the shared 2-core CPU, 5×512 MNIST net, budget 4096: 12 s with one thread, 82 s with two)."""
    import torch
    old = torch.get_num_threads()
    if target.n_params < small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def search_lipschitz(model, *, budget: int = DEFAULT_BUDGET, seed: int = 0, domain=(0.0, 1.0),
                     input_shape=None, near=None) -> LipschitzSearchResult:
    """Largest ‖f(x) − f(x′)‖∞ / ‖x − x′‖∞ found on [lo, hi]^D within ~`budget` model evaluations.

    `model`: an ONNX path, a torch module (eval mode) or a callable on float32 arrays (then
    `input_shape=` is required). `near`: optional data points [N, *input_shape]; half of the search's
    start points are drawn around them (the claim is still checked on the whole domain). Deterministic
    for a given seed. The returned pair is the one with
    the best rigorous lower bound among the best float pairs (see the module docstring).
    """
    target = as_target(model, input_shape)
    with _few_threads(target):
        pairs = search_pairs(target, budget=budget, seed=seed, domain=domain, near=near)
    if not pairs:
        zero = np.full(target.input_shape, domain[0], np.float32)
        return LipschitzSearchResult(0.0, 0.0, zero, zero.copy(), 0, 0.0, 0.0, target.rigorous, "none",
                                     budget, target.description, (float(domain[0]), float(domain[1])),
                                     list(target.notes))
    results = [_result(target, p, target.evaluations + 2 * _JUDGED, domain) for p in pairs[:_JUDGED]]
    return max(results, key=lambda r: (r.ratio_lower, r.ratio))


def save_counterexample(result: LipschitzSearchResult, L: float, save_dir=None) -> str:
    """Write the pair to an .npz (atomically) and return its path; the name is the content hash."""
    folder = Path(save_dir) if save_dir is not None else Path(tempfile.gettempdir()) / "linfverify-props"
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(result.x.tobytes() + result.x_prime.tobytes()).hexdigest()[:16]
    path = folder / f"lipschitz-cex-{digest}.npz"
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, x=result.x, x_prime=result.x_prime, L=np.float64(L),
                     ratio=np.float64(result.ratio), ratio_lower=np.float64(result.ratio_lower),
                     output_index=np.int64(result.output_index), domain=np.array(result.domain))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


def _fmt_list(a: np.ndarray) -> str:
    return "[" + ", ".join(repr(float(v)) for v in a.ravel()) + "]"


def violation_message(result: LipschitzSearchResult, L: float, model_ref: str) -> str:
    """The readable, replayable failure text of `check_lipschitz`."""
    tol = "rigorous" if result.rigorous else "HEURISTIC (no rigorous float error bound)"
    lines = [
        f"{result.model} is not {L:g}-Lipschitz in ℓ∞ on [{result.domain[0]:g}, {result.domain[1]:g}]: "
        f"‖f(x) − f(x′)‖∞ / ‖x − x′‖∞ = {result.ratio:.6g} at output {result.output_index} "
        f"(lower bound {result.ratio_lower:.6g} after the {tol} float tolerance "
        f"{result.float_error:.3g}), ‖x − x′‖∞ = {result.distance:.4g}, found by {result.method}",
    ]
    if result.x.size <= 16:
        lines += [f"  x  = {_fmt_list(result.x)}  (float32, shape {list(result.x.shape)})",
                  f"  x′ = {_fmt_list(result.x_prime)}"]
    if result.counterexample_path:
        lines += [f"  counterexample: {result.counterexample_path}",
                  f"  replay: from props.lipschitz import replay; "
                  f"print(replay({model_ref}, {result.counterexample_path!r}).ratio_lower)"]
    lines += [f"  note: {n}" for n in result.notes]
    return "\n".join(lines)


def check_lipschitz(model, L: float, *, domain=(0.0, 1.0), budget: int = DEFAULT_BUDGET, seed: int = 0,
                    input_shape=None, save_dir=None, near=None) -> LipschitzSearchResult:
    """Search for a violation of "model is L-Lipschitz in ℓ∞ on [lo, hi]^D"; raise if one is proven.

    Returns the search result when no pair has ratio_lower > L (which is evidence, not proof, of the
    claim: use the verifier's static bound for a proof). Raises `LipschitzViolation` (an
    AssertionError) with the ratio, L, the pair and a one-line replay when one has; the pair is saved
    to an .npz in `save_dir` (default: <tmp>/linfverify-props).
    """
    L = float(L)
    if not (L >= 0 and math.isfinite(L)):
        raise ValueError(f"L must be a finite number >= 0, got {L}")
    result = search_lipschitz(model, budget=budget, seed=seed, domain=domain, input_shape=input_shape,
                              near=near)
    if result.exceeds(L):
        result.counterexample_path = save_counterexample(result, L, save_dir)
        ref = repr(str(model)) if isinstance(model, (str, Path)) else "model"
        raise LipschitzViolation(violation_message(result, L, ref), result)
    return result


def replay(model, path, *, input_shape=None) -> LipschitzSearchResult:
    """Re-judge a saved counterexample (.npz from `check_lipschitz`) on `model`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, xp = np.asarray(z["x"], np.float32), np.asarray(z["x_prime"], np.float32)
            domain = tuple(float(v) for v in z["domain"]) if "domain" in z else (0.0, 1.0)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"cannot read counterexample {path}: {e}") from None
    target = as_target(model, input_shape if input_shape is not None else x.shape)
    f = target.evaluate(np.stack([x, xp]).reshape((2,) + target.input_shape))
    from props.search import pair_ratios
    r, k, _ = pair_ratios(f[:1], f[1:], x.reshape(1, -1), xp.reshape(1, -1))
    return _result(target, Pair(float(r[0]), x.ravel(), xp.ravel(), int(k[0]), "replay"), 2, domain)
