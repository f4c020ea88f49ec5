"""metadata_props of an exported model (keys fixed in docs/DESIGN.md and docs/onnx-ops.md).

All values are strings; every value except `producer`, `producer_version`, `architecture` and
`dataset` is JSON. `claimed_lipschitz` is the producer's claim of an ℓ∞→ℓ∞ Lipschitz bound of the
logits, computed from the weights in float64 (ℓ∞-dist layers, mean shift, Flatten, Tanh, ReLU: 1;
Linear: its ℓ∞ operator norm max_i Σ_j |W_ij|; fusion: Σ w_i L_i; voting: ½ Σ w_i L_i, softmax
being ½-Lipschitz in ℓ∞). It is a claim: the verifier recomputes a sound bound and never trusts it.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from common.errors import ModelError

PRODUCER = "linfverify"
KEYS = ("producer", "producer_version", "architecture", "dataset", "input_range", "eps_train",
        "claimed_lipschitz", "model_config")


def producer_version() -> str:
    """The installed package version, else the version in the source tree's pyproject.toml."""
    try:
        return importlib.metadata.version("linfverify")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _linf_op_norm(w: np.ndarray) -> float:
    return float(np.abs(w.astype(np.float64)).sum(axis=1).max()) if w.size else 0.0


def sequential_lipschitz(seq: nn.Module | None) -> float:
    """Product of per-module ℓ∞ Lipschitz bounds of an nn.Sequential (1 for None)."""
    if seq is None:
        return 1.0
    from nets.layers import LinfDistConv2d, LinfDistLinear, MeanShift

    lip = 1.0
    for mod in seq.children() if isinstance(seq, nn.Sequential) else [seq]:
        if isinstance(mod, (LinfDistLinear, LinfDistConv2d)):
            lip *= 1.0 if float(mod.p) == math.inf else math.inf
        elif isinstance(mod, nn.Linear):
            lip *= _linf_op_norm(mod.weight.detach().cpu().numpy())
        elif isinstance(mod, (MeanShift, nn.Flatten, nn.Tanh, nn.ReLU, nn.Identity, nn.MaxPool2d, nn.AvgPool2d)):
            pass
        else:
            return math.inf
    return lip


def net_lipschitz(net: nn.Module) -> float:
    """Claimed ℓ∞ Lipschitz bound of one nets model (trunk then head; Neg is 1-Lipschitz)."""
    return sequential_lipschitz(net.trunk) * sequential_lipschitz(getattr(net, "head", None))


def _ensemble(model: nn.Module):
    members = getattr(model, "members", None)
    if members is None:
        return None
    w = getattr(model, "weights")
    w = w() if callable(w) else w
    w = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, np.float64).ravel()
    return list(members), w, str(getattr(model, "mode", "fusion"))


def claimed_lipschitz(model: nn.Module) -> float:
    """The producer's claimed ℓ∞→ℓ∞ Lipschitz bound of the logits (see module docstring)."""
    ens = _ensemble(model)
    if ens is None:
        return net_lipschitz(model)
    members, w, mode = ens
    total = float(sum(wi * net_lipschitz(m) for wi, m in zip(w, members)))
    return 0.5 * total if mode == "voting" else total


def _config_dict(net: nn.Module) -> dict:
    cfg = getattr(net, "config", None)
    if cfg is None:
        return {}
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def model_description(model: nn.Module) -> tuple[str, dict]:
    """(architecture string, model_config JSON object) of a net or ensemble."""
    ens = _ensemble(model)
    if ens is None:
        cfg = _config_dict(model)
        return str(cfg.get("arch", type(model).__name__)), cfg
    members, w, mode = ens
    cfgs = [_config_dict(m) for m in members]
    arch = f"ensemble-{mode}(" + ",".join(str(c.get("arch", "?")) for c in cfgs) + ")"
    return arch, {"ensemble": {"mode": mode, "weights": [float(x) for x in w], "members": cfgs}}


def _json_number(v: Any, key: str) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ModelError(f"metadata {key} must be a number, got {v!r}") from None
    if math.isnan(x):
        raise ModelError(f"metadata {key} is NaN")
    return json.dumps(x) if math.isfinite(x) else json.dumps(str(x))


def build_metadata(model: nn.Module, *, dataset: str, eps_train: float | None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """metadata_props for ``model``: the DESIGN.md keys (+ ``extra``, JSON-encoded unless str)."""
    arch, cfg = model_description(model)
    lip = claimed_lipschitz(model)
    meta = {
        "producer": PRODUCER,
        "producer_version": producer_version(),
        "architecture": arch,
        "dataset": str(dataset),
        "input_range": json.dumps([0.0, 1.0]),
        "eps_train": "null" if eps_train is None else _json_number(eps_train, "eps_train"),
        # JSON has no infinity: an unbounded claim is the string "inf"
        "claimed_lipschitz": _json_number(lip, "claimed_lipschitz"),
        "model_config": json.dumps(cfg, sort_keys=True),
    }
    for k, v in (extra or {}).items():
        if k == "input_range":
            try:
                lo, hi = (float(a) for a in v)
            except (TypeError, ValueError):
                raise ModelError(f"input_range must be [lo, hi], got {v!r}") from None
            if not lo < hi:
                raise ModelError(f"input_range must be [lo, hi] with lo < hi, got {v!r}")
            v = json.dumps([lo, hi])
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    return meta


def read_metadata(model_proto) -> dict[str, Any]:
    """metadata_props of a ModelProto decoded (JSON values parsed; plain strings kept)."""
    out: dict[str, Any] = {}
    for p in model_proto.metadata_props:
        if p.key in ("producer", "producer_version", "architecture", "dataset"):
            out[p.key] = p.value
            continue
        try:
            out[p.key] = json.loads(p.value)
        except json.JSONDecodeError:
            out[p.key] = p.value
    return out
