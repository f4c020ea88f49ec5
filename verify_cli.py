"""linfverify command line: train, export, certify, check, attack, audit ℓ∞-dist nets.

One thin function per command; the work lives in nets/, export/, verify/ and props/.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from verify.errors import LinfVerifyError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, export, soundly certify and falsify ℓ∞-dist nets.",
)


def user_errors(fn):
    """Turn user-facing errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LinfVerifyError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            typer.echo(f"error: {e.strerror or e}: {e.filename}", err=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


# ---- commands: each section is owned by one module; keep them thin ----


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="checkpoint directory (config.json + model.safetensors)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write")],
    opset: Annotated[int, typer.Option(help="default-domain ONNX opset (18..23)")] = 18,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="run the full ONNX checker and an onnxruntime parity run vs torch")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
):
    """Export a trained checkpoint to one self-contained ONNX file (linf ops + standard-op bodies)."""
    import json

    from export import export_checkpoint, read_metadata

    m = export_checkpoint(checkpoint, out, opset=opset, check=check)
    meta = read_metadata(m)
    linf_nodes = sum(1 for n in m.graph.node if n.domain == "linf")
    summary = {"out": str(out), "bytes": out.stat().st_size, "opset": opset, "nodes": len(m.graph.node),
               "linf_nodes": linf_nodes, "checked": check, **{k: meta.get(k) for k in
               ("architecture", "dataset", "eps_train", "claimed_lipschitz")}}
    if json_out:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"exported {out}", show_header=False)
    for k, v in summary.items():
        table.add_row(k, str(v))
    Console().print(table)


if __name__ == "__main__":
    app()
