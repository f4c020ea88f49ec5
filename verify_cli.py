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


if __name__ == "__main__":
    app()
