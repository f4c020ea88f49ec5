"""Command-line options DERIVED from a config dataclass's fields (the `train` command's options).

`dataclass_options(cls, skip)` turns every field of `cls` into a typer option named after it
(`eps_train` → `--eps-train`), typed from the field's annotation, with the help text from the
field's metadata and default None ("keep the preset's value"); booleans become `--x/--no-x`, tuples a
comma-separated list of integers ("6,16"). `parse_options(cls, values)` converts what typer returns
back into field values. A new TrainConfig or ModelConfig field is an option with no CLI edit.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Annotated, Optional

import typer

from nets.presets import ConfigError
from pipeline.cli_options import SHARED_HELP, JsonOpt


def _kind(f: dataclasses.Field) -> type | None:
    t = str(f.type)
    if "dict" in t:
        return None
    for name, kind in (("tuple", tuple), ("bool", bool), ("float", float), ("int", int), ("str", str)):
        if name in t:
            return kind
    return None


def dataclass_options(cls, skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword-only typer parameter per field of `cls` (not in `skip`, not a dict)."""
    params = []
    for f in dataclasses.fields(cls):
        kind = _kind(f)
        if f.name in skip or kind is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = SHARED_HELP.get(flag, f.metadata.get("help", ""))  # a shared option keeps its one help text
        if kind is bool:
            opt = typer.Option(f"{flag}/--no-{flag[2:]}", help=help_)
            ann = Optional[bool]
        elif kind is tuple:
            opt = typer.Option(flag, help=f"{help_} (comma-separated integers)", metavar="N,N,...")
            ann = Optional[str]
        else:
            opt = typer.Option(flag, help=help_)
            ann = Optional[kind]
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[ann, opt]))
    return params


def parse_options(cls, values: dict) -> dict:
    """Field values from the options typer parsed (None: not given, left out)."""
    kinds = {f.name: _kind(f) for f in dataclasses.fields(cls)}
    out = {}
    for name, v in values.items():
        if v is None or name not in kinds:
            continue
        if kinds[name] is tuple:
            try:
                v = tuple(int(s) for s in str(v).split(",") if s.strip() != "")
            except ValueError:
                raise ConfigError(f"--{name.replace('_', '-')} wants comma-separated integers, got {v!r}") from None
        out[name] = v
    return out


def train_signature():
    """The `train` command's parameters: preset, --out, --json (the shared option), then
    one option per TrainConfig field (:func:`dataclass_options`)."""
    from pathlib import Path

    from nets.presets import PRESETS, TrainConfig

    kw = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        inspect.Parameter("preset", kw, default="digits-small", annotation=Annotated[str, typer.Option(
            help="named preset: " + ", ".join(PRESETS))]),
        inspect.Parameter("out", kw, default=None, annotation=Annotated[Optional[Path], typer.Option(
            "--out", "-o", help="checkpoint directory to write (default runs/PRESET-seedN)")]),
        inspect.Parameter("json_out", kw, default=False, annotation=JsonOpt),
    ]
    return inspect.Signature(fixed + dataclass_options(TrainConfig, skip=("notes",)))
