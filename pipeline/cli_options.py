"""The options several commands share, declared once (typer ``Annotated`` aliases).

Every command of verify_cli.py uses these instead of declaring its own, so an option has one name,
one help text and one meaning everywhere (docs/CLI.md, "Options that mean the same everywhere"):
- ``--json``: one JSON object on stdout, nothing else there; progress and messages go to stderr;
- ``--limit N``: the first N samples, N ≥ 1; left out: all samples (``--limit 0`` is refused);
- ``--eps E``: the ℓ∞ radius, a finite number ≥ 0; 0 is the sample itself (certified = classified
  correctly with a proven margin, an attack has nothing to search);
- ``--data``, ``--data-dir``, ``--split``, ``--domain``, the ``MODEL`` argument;
- ``--out`` / ``-o``: :func:`out_option` (the help names what is written);
- ``--guarantee real|float32``: what a proof must hold for (verify/guarantee.py), for every command
  that proves (``certify``, ``vnnlib``; ``check`` re-proves under the file's own); checked by ``verify.guarantee.check_guarantee``
  (a bad value: one line, exit 2).
A new command adopts them by annotating its parameters: ``json_out: JsonOpt = False``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperCommand

__all__ = ["JsonOpt", "LimitOpt", "EpsOpt", "DataOpt", "DataDirOpt", "SplitOpt", "DomainOpt", "ModelArg",
           "SeedOpt", "PresetSeedOpt", "StepsOpt", "RestartsOpt", "BatchSizeOpt", "GuaranteeOpt", "out_option",
           "SHARED_HELP",
           "App", "PlainUsageCommand"]

SHARED_HELP = {
    "--json": "print one JSON object on stdout (progress and messages go to stderr)",
    "--limit": "only the first N samples (N ≥ 1; default: all)",
    "--eps": "ℓ∞ radius in input units (≥ 0; 0 is the sample itself)",
    "--data": ".npz with x, y or a data set name (mnist, fashion-mnist, cifar10, digits)",
    "--data-dir": "folder with the data sets (default ../shared/data)",
    "--split": "data split for named data sets",
    "--domain": "input domain LO HI",
    "--seed": "random seed (same seed, same result)",
    "--steps": "APGD iterations per run",
    "--restarts": "random restarts per run",
    "--guarantee": "what a proof must hold for: float32 = the exact real function of the stored weights AND "
                   "onnxruntime's float32 evaluation at every float32 input of the ball (theorems (a) and (b)); "
                   "real = the exact real function only (theorem (a); no float32 allowance, tighter bounds). "
                   "Stated in the output; docs/SOUNDNESS.md",
}

JsonOpt = Annotated[bool, typer.Option("--json", help=SHARED_HELP["--json"])]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", metavar="N", help=SHARED_HELP["--limit"])]
EpsOpt = Annotated[float, typer.Option("--eps", help=SHARED_HELP["--eps"])]
DataOpt = Annotated[str, typer.Option("--data", help=SHARED_HELP["--data"])]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help=SHARED_HELP["--data-dir"])]
SplitOpt = Annotated[str, typer.Option("--split", help=SHARED_HELP["--split"])]
DomainOpt = Annotated[tuple[float, float], typer.Option("--domain", help=SHARED_HELP["--domain"])]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help=SHARED_HELP["--seed"])]
PresetSeedOpt = Annotated[Optional[int], typer.Option("--seed", help=SHARED_HELP["--seed"] + "; default: the preset's")]
StepsOpt = Annotated[int, typer.Option("--steps", help=SHARED_HELP["--steps"])]
RestartsOpt = Annotated[int, typer.Option("--restarts", help=SHARED_HELP["--restarts"])]
GuaranteeOpt = Annotated[str, typer.Option("--guarantee", metavar="real|float32", help=SHARED_HELP["--guarantee"])]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="samples per batch (verifier commands)")]
ModelArg = Annotated[Path, typer.Argument(metavar="MODEL", help="ONNX model file", show_default=False)]


def out_option(what: str):
    """The ``--out``/``-o`` option of a command that writes WHAT (a file or a folder)."""
    return typer.Option("--out", "-o", help=f"{what} to write")


class PlainUsageCommand(TyperCommand):
    """A command whose usage line names its arguments as their help does (``MODEL``, not typer's
    ``{MODEL}`` for a required argument)."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in super().collect_usage_pieces(ctx)]


class App(typer.Typer):
    """typer.Typer whose commands all use :class:`PlainUsageCommand` (also commands added later)."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or PlainUsageCommand, **kwargs)
