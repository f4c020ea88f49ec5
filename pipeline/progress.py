"""Progress reporting: library loops call ``progress(done, total)``; the CLI shows it on stderr.

The library functions (``run_certify``, ``run_attack``, ``run_check``, ``run_audit``) take an
optional ``progress`` callback and call it first only after every input was validated, so a refused
command never draws a bar. :func:`progress_bar` is the one rich bar every command uses: always on
stderr (stdout stays one JSON object under ``--json``), transient, and silent when stderr is not a
terminal (``FORCE_COLOR``/``TTY_COMPATIBLE`` make rich treat it as one). :func:`sub_progress` maps one
stage's progress into a larger run (the audit's certify and attack runs per ε).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["Progress", "progress_bar", "sub_progress"]

Progress = Callable[[int, int], None]


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar labelled LABEL on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
              console=err, transient=True, disable=not err.is_terminal)
    task = None

    def progress(done: int, total: int) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield progress
    finally:
        if task is not None:
            bar.stop()


def sub_progress(progress: Progress | None, start: int, span: int, total: int) -> Progress | None:
    """A callback that reports a stage's ``(done, of)`` as ``start + done/of·span`` out of TOTAL."""
    if progress is None:
        return None
    return lambda done, of: progress(start + (span * done // of if of else span), total)
