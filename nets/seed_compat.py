"""Convert checkpoints of the seed papers' public code into our nets models.

Sources (read for key names and run-time conventions): zbh2047/L_inf-dist-net (v1: model/mlp.py,
model/norm_dist.py, model/bound_module.py) and zbh2047/L_inf-dist-net-v2 (ell_inf_models.py,
core/modules/*.py). Supported layouts (pure ℓ∞-dist MLP and ℓ∞-dist+MLP):

v1 pure   ``feature.fc.{i}.weight`` [W, D, 1, 1], ``feature.fc.{i}.normalize.running_mean``,
          ``feature.fc_last.weight`` [K, W, 1, 1], ``feature.fc_last.bias``
v1 +MLP   ``feature.fc.{i}.weight``/``.normalize.running_mean``, ``predictor.fc1.{weight,bias}``,
          ``predictor.fc2.{weight,bias}``
v2 pure   ``fc_dist.{i}.weight`` [W, D], ``fc_dist.{i}.mean_shift.running_mean``, last ``fc_dist.{L}``
          with ``bias``, optional ``scalar`` [1]
v2 +MLP   ``fc_dist.{i}.*``, ``fc_linear.0.{weight,bias}``, ``fc_final.{weight,bias}``
Any of them may carry the DDP ``module.`` prefix and may be wrapped as {"state_dict": ...}.

Run-time conventions handled (none of them is stored in the file):
- the head's Linear layers compute ``x @ W.T / sqrt(fan_in) + b`` (BoundLinear/BoundFinalLinear,
  w_scale = 1/sqrt(in_features), both versions): folded into our nn.Linear weights;
- inputs are normalised ``(x − mean_c) / std`` with the seed's per-data-set constants (scalar std):
  because ‖(x − m)/s − w‖∞ = (1/s)·‖x − (m + s·w)‖∞ and ℓ∞ distances are positively homogeneous,
  the converted model takes raw [0, 1] pixels and computes exactly s × (the seed trunk), with
  weights m + s·w (first layer), s·w (later layers), s·running_mean, s·bias; the head's first
  Linear absorbs 1/s. So +MLP logits equal the seed's and pure-net logits are s/c × the seed's
  (c = v2 ``scalar`` > 0): the same classifier, margins and radii in input units;
- v1 NormDist weights are [out, in, 1, 1] (1×1 conv form): flattened;
- a v2 ``MeanShift(affine=True)`` bias (``….mean_shift.bias``) folds into the running mean.
Loading uses ``torch.load(weights_only=True)`` only: no pickle code ever runs.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from nets.layers import MeanShift
from nets.models import ModelConfig, build_model, dist_layers
from common.errors import ModelError

__all__ = ["SEED_NORMALIZATION", "SeedLayout", "load_seed_state_dict", "detect_layout", "convert_state_dict",
           "convert_seed_checkpoint"]

#: (per-channel mean, scalar std) of the seed code's dataset.py (identical in v1 and v2)
SEED_NORMALIZATION = {
    "mnist": ((0.1307,), 0.3081),
    "fashion-mnist": ((0.2860,), 0.3520),
    "cifar10": ((0.4914, 0.4822, 0.4465), 0.2009),
}
_INPUT_SHAPES = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


@dataclass(frozen=True)
class SeedLayout:
    """Which seed layout a state_dict has: version, kind and the key prefixes of its layers."""

    version: str              # "v1" | "v2"
    kind: str                 # "pure" | "mlp"
    dist: tuple[str, ...]     # key prefixes of the ℓ∞-dist layers, in order
    shifts: tuple[str, ...]   # running_mean keys, one per mean-shifted dist layer
    head: tuple[str, str] | None  # (first Linear, final Linear) prefixes for +MLP


def load_seed_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a seed checkpoint with ``torch.load(weights_only=True)``; unwrap {"state_dict": ...}
    and strip the DDP ``module.`` prefix. ModelError on anything else."""
    try:
        obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"checkpoint not found: {path}") from None
    except Exception as e:  # noqa: BLE001 - unpickling refused or corrupt file
        raise ModelError(f"cannot read {path} as a weights-only torch checkpoint: {str(e).splitlines()[0][:160]}") from None
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state_dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _indexed(sd: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.fullmatch(k))})


def detect_layout(sd: dict[str, torch.Tensor]) -> SeedLayout:
    """Recognise the v1/v2 pure/+MLP layouts (module docstring); ModelError otherwise."""
    if "feature.fc.0.weight" in sd or "feature.fc_last.weight" in sd:
        idx = _indexed(sd, r"feature\.fc\.(\d+)\.weight")
        dist = tuple(f"feature.fc.{i}" for i in idx)
        shifts = tuple(f"{p}.normalize.running_mean" for p in dist)
        if "feature.fc_last.weight" in sd:
            return SeedLayout("v1", "pure", dist + ("feature.fc_last",), shifts, None)
        if "predictor.fc1.weight" in sd and "predictor.fc2.weight" in sd:
            return SeedLayout("v1", "mlp", dist, shifts, ("predictor.fc1", "predictor.fc2"))
    if "fc_dist.0.weight" in sd:
        idx = _indexed(sd, r"fc_dist\.(\d+)\.weight")
        dist = tuple(f"fc_dist.{i}" for i in idx)
        if "fc_final.weight" in sd and "fc_linear.0.weight" in sd:
            shifts = tuple(f"{p}.mean_shift.running_mean" for p in dist)
            return SeedLayout("v2", "mlp", dist, shifts, ("fc_linear.0", "fc_final"))
        shifts = tuple(f"{p}.mean_shift.running_mean" for p in dist[:-1])
        return SeedLayout("v2", "pure", dist, shifts, None)
    raise ModelError("unrecognised checkpoint layout: expected the seed code's v1 (feature.fc.*) or v2 "
                     "(fc_dist.*) ℓ∞-dist MLP keys; conv models are not supported")


def _get(sd, key) -> torch.Tensor:
    if key not in sd:
        raise ModelError(f"checkpoint is missing {key!r}")
    return sd[key].detach().to(torch.float64)


def _dist_weight(sd, prefix) -> torch.Tensor:
    w = _get(sd, prefix + ".weight")
    if w.dim() == 4 and w.shape[2:] == (1, 1):
        w = w[:, :, 0, 0]
    if w.dim() != 2:
        raise ModelError(f"{prefix}.weight must be [out, in] (or [out, in, 1, 1]), got {list(w.shape)}")
    return w


def convert_state_dict(sd: dict[str, torch.Tensor], dataset: str, *, normalize: bool = True,
                       input_shape: tuple[int, int, int] | None = None) -> tuple[nn.Module, dict]:
    """Our LinfDistNet (eval mode, p = ∞) equivalent to the seed model; plus conversion notes.

    ``normalize``: apply the seed's input normalisation of ``dataset`` (True for models trained
    with the seed code); the converted model takes raw pixels in [0, 1].
    """
    lay = detect_layout(sd)
    shape = input_shape or _INPUT_SHAPES.get(dataset)
    if shape is None:
        raise ModelError(f"unknown input shape for data set {dataset!r}; pass input_shape")
    mean, std = SEED_NORMALIZATION.get(dataset, ((0.0,) * shape[0], 1.0)) if normalize else ((0.0,) * shape[0], 1.0)
    if normalize and dataset not in SEED_NORMALIZATION:
        raise ModelError(f"no seed normalisation constants for data set {dataset!r}")
    ws = [_dist_weight(sd, p) for p in lay.dist]
    d_in = shape[0] * shape[1] * shape[2]
    if ws[0].shape[1] != d_in:
        raise ModelError(f"first layer takes {ws[0].shape[1]} inputs, {dataset} images have {d_in}")
    for a, b in zip(ws[:-1], ws[1:]):
        if b.shape[1] != a.shape[0]:
            raise ModelError("consecutive ℓ∞-dist layers have mismatched sizes")
    widths = {w.shape[0] for w in (ws[:-1] if lay.kind == "pure" else ws)}
    if len(widths) > 1:
        raise ModelError(f"hidden ℓ∞-dist layers of different widths {sorted(widths)} are not supported")
    scalar = 1.0
    if "scalar" in sd:
        scalar = float(sd["scalar"].reshape(-1)[0])
        if not scalar > 0:
            raise ModelError(f"the v2 logit scalar must be > 0 to convert, got {scalar}")
    s = float(std)
    m_vec = torch.tensor(mean, dtype=torch.float64).repeat_interleave(shape[1] * shape[2])
    conv_ws = [m_vec[None, :] + s * ws[0]] + [s * w for w in ws[1:]]
    if lay.kind == "pure":
        cfg = ModelConfig(arch="linf", input_shape=tuple(shape), num_classes=ws[-1].shape[0], depth=len(ws),
                          width=ws[0].shape[0] if len(ws) > 1 else ws[-1].shape[0], mean_shift=True,
                          identity_init=False)
    else:
        h1 = _get(sd, lay.head[0] + ".weight")
        cfg = ModelConfig(arch="linf-mlp", input_shape=tuple(shape), num_classes=_get(sd, lay.head[1] + ".weight").shape[0],
                          depth=len(ws), width=ws[0].shape[0], hidden=h1.shape[0], mean_shift=True, identity_init=False)
    model = build_model(cfg)
    with torch.no_grad():
        layers = dist_layers(model)
        shifts = [mod for mod in model.modules() if isinstance(mod, MeanShift)]
        if len(layers) != len(conv_ws) or len(shifts) != len(lay.shifts):
            raise ModelError("seed layout does not match the rebuilt model")
        for layer, w in zip(layers, conv_ws):
            layer.weight.copy_(w.to(torch.float32))
        for mod, key in zip(shifts, lay.shifts):
            shift = _get(sd, key)
            affine = key[: -len("running_mean")] + "bias"  # v2 MeanShift(affine=True): x − (mean − bias)
            if affine in sd:
                shift = shift - _get(sd, affine)
            mod.running_mean.copy_((s * shift).to(torch.float32))
        if lay.kind == "pure":
            layers[-1].bias.copy_((s * _get(sd, lay.dist[-1] + ".bias")).to(torch.float32))
        else:
            lins = [mod for mod in model.head if isinstance(mod, nn.Linear)]
            for lin, prefix, extra in zip(lins, lay.head, (1.0 / s, 1.0)):
                w = _get(sd, prefix + ".weight")
                lin.weight.copy_((w * (extra / math.sqrt(w.shape[1]))).to(torch.float32))
                lin.bias.copy_(_get(sd, prefix + ".bias").to(torch.float32))
    model.eval()
    notes = {"seed_version": lay.version, "seed_kind": lay.kind, "seed_std": s, "seed_mean": list(mean),
             "seed_scalar": scalar,
             "logit_scale_vs_seed": (s / scalar) if lay.kind == "pure" else 1.0}
    return model, notes


def convert_seed_checkpoint(path: str | os.PathLike, dataset: str, *, normalize: bool = True) -> tuple[nn.Module, dict]:
    """Load (weights only) and convert a seed checkpoint file; see :func:`convert_state_dict`."""
    return convert_state_dict(load_seed_state_dict(path), dataset, normalize=normalize)
