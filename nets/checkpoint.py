"""Checkpoints: a directory with `config.json` and `model.safetensors`; loading never unpickles.

config.json:
    {"format": "linfverify-checkpoint", "version": 1,
     "model": ModelConfig.to_dict() | {"ensemble": {"mode", "weights", "members": [ModelConfig dicts]}},
     ...meta}                      # e.g. "train", "dataset", "input_range", "eps_train", "metrics"
model.safetensors: the model's full state_dict (parameters AND buffers, e.g. MeanShift running means;
the EMA weights when the trainer passes its EMA model). Ensemble keys are `members.<k>.<key>` plus
`weights`.

`save_checkpoint` writes into a fresh temporary directory next to the target and renames it into
place, so a reader never sees a partial checkpoint. `load_checkpoint` reads only those two files
inside the given folder (symlinks leading outside are refused), checks key set, shapes and dtypes
exactly, and raises `common.errors.ModelError` with one line on any malformed input.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from nets.ensemble import ConvexEnsemble
from nets.models import ModelConfig, build_model
from common.errors import ModelError

FORMAT = "linfverify-checkpoint"
VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RESERVED = ("format", "version", "model")
MAX_CONFIG_BYTES = 16 << 20


# ---------------------------------------------------------------- describe / rebuild


def model_description(model: nn.Module) -> dict:
    """The JSON `model` entry that `build_from_description` turns back into the same architecture."""
    if isinstance(model, ConvexEnsemble):
        return model.config
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise ModelError(f"cannot save a {type(model).__name__}: it has no ModelConfig in .config")
    return cfg.to_dict()


def build_from_description(desc) -> nn.Module:
    """A freshly initialised model (or ensemble) for a `model` entry of config.json."""
    if isinstance(desc, dict) and "ensemble" in desc:
        ens = desc["ensemble"]
        if not isinstance(ens, dict) or set(ens) != {"mode", "weights", "members"}:
            raise ModelError("config.json: 'ensemble' must have exactly the keys mode, weights, members")
        if not isinstance(ens["members"], list) or not ens["members"]:
            raise ModelError("config.json: ensemble members must be a non-empty list")
        if not isinstance(ens["weights"], list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in ens["weights"]):
            raise ModelError("config.json: ensemble weights must be a list of numbers")
        members = [build_model(ModelConfig.from_dict(m)) for m in ens["members"]]
        return ConvexEnsemble(members, ens["weights"], mode=ens["mode"])
    return build_model(ModelConfig.from_dict(desc))


# ---------------------------------------------------------------- save


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside an EMA `AveragedModel` or a (Distributed)DataParallel wrapper."""
    from torch.optim.swa_utils import AveragedModel

    wrappers = (AveragedModel, nn.DataParallel, nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def checkpoint_files(path: str | os.PathLike) -> list[Path]:
    """The files a checkpoint directory consists of (what a reader of it reads)."""
    return [Path(path) / CONFIG_NAME, Path(path) / WEIGHTS_NAME]


def check_target(path: str | os.PathLike) -> None:
    """Refuse (ModelError) a path `save_checkpoint` must not replace: anything but an absent path, an
    empty directory or a checkpoint directory (so nothing unrelated is ever deleted). Cheap; callers
    run it before training so a bad --out never costs a training run."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir() or path.is_symlink():
            raise ModelError(f"refusing to overwrite {path}: it is not a checkpoint directory")
        if any(path.iterdir()) and not (path / CONFIG_NAME).is_file():
            raise ModelError(f"refusing to overwrite {path}: non-empty directory without {CONFIG_NAME}")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict | None = None) -> Path:
    """Write `model` (+ JSON `meta`) as a checkpoint directory at `path`, atomically; returns the path.

    An EMA `AveragedModel` (or DDP wrapper) is unwrapped: its averaged module, buffers included,
    is what gets saved.
    An existing checkpoint directory at `path` is replaced; any other existing file or non-empty
    directory there is refused (ModelError), so nothing unrelated is ever deleted.
    """
    from safetensors.torch import save_file

    path = Path(path)
    model = unwrap(model)
    meta = dict(meta or {})
    clash = [k for k in RESERVED if k in meta]
    if clash:
        raise ModelError(f"checkpoint meta may not use the reserved keys {', '.join(clash)}")
    doc = {"format": FORMAT, "version": VERSION, "model": model_description(model), **meta}
    try:
        text = json.dumps(doc, indent=2, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelError(f"checkpoint meta is not plain JSON: {e}") from None
    check_target(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=parent))
    old = None
    try:
        save_file(_state_tensors(model), str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.replace(path, old / "ckpt")
        os.replace(tmp, path)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "ckpt").exists() and not path.exists():
            os.replace(old / "ckpt", path)  # put the previous checkpoint back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


# ---------------------------------------------------------------- load


def _inside(folder: Path, name: str) -> Path:
    """folder/name, which must be a regular file whose real path stays inside folder."""
    f = folder / name
    if not f.is_file():
        raise ModelError(f"{folder} is not a checkpoint: {name} is missing")
    real_folder = folder.resolve()
    if real_folder not in f.resolve().parents:
        raise ModelError(f"{f} points outside the checkpoint folder; refusing to read it")
    return f


def _read_config(folder: Path) -> dict:
    f = _inside(folder, CONFIG_NAME)
    if f.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"{f} is implausibly large for a checkpoint config")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise ModelError(f"{f} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelError(f"{f} is not a linfverify checkpoint config (format != {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise ModelError(f"{f}: unsupported checkpoint version {doc.get('version')!r} (this reads {VERSION})")
    if "model" not in doc:
        raise ModelError(f"{f} has no 'model' entry")
    return doc


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name}")


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = _inside(folder, WEIGHTS_NAME)
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{f} is not a readable safetensors file: {msg}") from None


def _check_state(model: nn.Module, tensors: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:5])}"] if unexpected else [])
        raise ModelError(f"{where}: weights do not match config.json ({'; '.join(parts)})")
    for k, ref in expected.items():
        t = tensors[k]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise ModelError(f"{where}: tensor {k} is {t.dtype}{list(t.shape)}, "
                             f"config.json needs {ref.dtype}{list(ref.shape)}")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ModelError(f"{where}: tensor {k} contains NaN or inf")


def load_checkpoint(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(model in eval mode at p = ∞, meta) from a checkpoint directory (or a file inside one).

    meta is config.json without "format", "version" and "model". Raises ModelError on any problem.
    """
    folder = Path(path)
    if folder.is_file() and folder.name in (CONFIG_NAME, WEIGHTS_NAME):
        folder = folder.parent
    if not folder.exists():
        raise ModelError(f"checkpoint {folder} does not exist")
    if not folder.is_dir():
        raise ModelError(f"checkpoint {folder} is not a directory with {CONFIG_NAME} and {WEIGHTS_NAME}")
    doc = _read_config(folder)
    model = build_from_description(doc["model"])
    tensors = _read_tensors(folder)
    _check_state(model, tensors, folder / WEIGHTS_NAME)
    model.load_state_dict(tensors, strict=True)
    if isinstance(model, ConvexEnsemble):
        saved = doc["model"]["ensemble"]["weights"]
        if any(not math.isclose(a, b, abs_tol=1e-6) for a, b in zip(model.weights.tolist(), saved)):
            raise ModelError(f"{folder}: ensemble weights in {WEIGHTS_NAME} disagree with {CONFIG_NAME}")
    model.eval()
    meta = {k: v for k, v in doc.items() if k not in RESERVED}
    return model, meta
