"""Output safety for every command that writes: refuse before work, one writer, atomic files.

A command that writes declares its inputs (the files it reads) and its outputs, and before any work
calls :func:`check_file_output` / :func:`check_dir_output`, which refuse (``OutputError``, exit 2):
- an output that resolves to an input: same real path (symlinks resolved) or same file (hard links,
  compared by device and inode), including an ONNX model's external data files;
- an output that exists and is not a regular file (device such as /dev/full, fifo, socket, a folder
  where a file is written), or a regular file where a folder is needed;
- an output whose folder does not exist;
- an output folder that contains one of the inputs (a report folder is the command's own).
:func:`output_lock` then takes an exclusive non-blocking ``flock`` on ``.NAME.lock`` beside the
output: a second run on the same output fails at once (``OutputBusy``, exit 5) instead of
interleaving its writes with the first. :func:`atomic_file` writes through a temp file in the same
folder and renames it over the target only on success, so a failure (disk full, interruption) never
leaves a partial output and never truncates an existing file.

This module imports nothing of ours but ``common.errors``, so nets/ and export/ may use it too.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.errors import LinfVerifyError

__all__ = ["OutputError", "OutputBusy", "EXIT_CODES", "os_error_line", "model_files",
           "data_files", "check_file_output", "check_dir_output", "output_lock", "atomic_file",
           "write_bytes_atomic", "removed_on_error"]


class OutputError(LinfVerifyError):
    """An output path is refused: it is an input, not a regular file, or its folder is missing."""


class OutputBusy(LinfVerifyError):
    """Another run holds the lock of the same output."""

    exit_code = 5


EXIT_CODES = {0: "success", 1: "a check failed (certificate file rejected)", 2: "bad input or refused output",
              3: "soundness alarm (certified and falsified)", 4: "the operating system refused a read or write "
              "(permission, read-only file system, disk full, out of memory)",
              5: "another run is writing the same output", 130: "interrupted"}


def os_error_line(e: OSError) -> str:
    """One line for an OSError: its reason and the file(s) it is about."""
    names = [str(f) for f in (e.filename, e.filename2) if f is not None]
    reason = e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e) or type(e).__name__
    return f"{reason}: {' -> '.join(names)}" if names else reason


def exit_code_of(e: BaseException) -> tuple[int, str] | None:
    """(exit code, one line) for an error the user can act on (EXIT_CODES); None for a bug."""
    if isinstance(e, LinfVerifyError):
        return e.exit_code, str(e)
    if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return 2, os_error_line(e)
    if isinstance(e, OSError):
        return 4, os_error_line(e)
    if isinstance(e, MemoryError):
        return 4, "out of memory"
    return None


def command_inputs(model=None, data=None, data_dir=None, *files) -> list[Path]:
    """The files a command reads, which no output may overwrite (model: its external data too)."""
    found = [] if model is None else model_files(model)
    found += [] if data is None else data_files(data, data_dir)
    return found + [Path(f) for f in files if f is not None]


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(p)))


def model_files(path: str | os.PathLike) -> list[Path]:
    """An ONNX model file and the external data files it names (those that exist next to it).

    Only used to protect them from being overwritten; the loader decides what it reads. An unreadable
    or malformed file yields just itself (the loader refuses it later with its own message).
    """
    p = Path(path)
    files = [p]
    if not p.is_file():
        return files
    try:
        import onnx

        m = onnx.load(os.fspath(p), load_external_data=False)
    except Exception:  # noqa: BLE001 - any parse problem is the loader's to report
        return files
    graphs = [m.graph]
    tensors = []
    while graphs:
        g = graphs.pop()
        tensors.extend(g.initializer)
        for n in list(g.node) + [n for f in (m.functions if g is m.graph else ()) for n in f.node]:
            for a in n.attribute:
                tensors.extend([a.t] if a.HasField("t") else [])
                tensors.extend(a.tensors)
                graphs.extend([a.g] if a.HasField("g") else [])
                graphs.extend(a.graphs)
    for t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in t.external_data}.get("location", "")
            if loc and "\x00" not in loc:
                files.append(p.parent / loc)
    return files


def data_files(data: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """What a ``--data`` option reads: the file itself, or a named data set's folder (a folder here
    protects every existing file below it, see :func:`check_file_output`)."""
    from common.datasets import canonical_name, default_data_dir

    name = canonical_name(os.fspath(data))
    if name is None:
        return [Path(data)]
    if name == "digits":  # bundled with scikit-learn
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        roots = list(spec.submodule_search_locations or []) if spec else []
        return [Path(r) / "datasets" / "data" for r in roots]
    d = Path(data_dir) if data_dir is not None else default_data_dir()
    return [d] if d is not None else []


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _clash(out: Path, inputs: Iterable[str | os.PathLike], tree: bool = True) -> str | None:
    """The input that ``out`` would overwrite, if any (``out`` exists or not). ``tree``: an existing
    ``out`` inside an input folder counts (not for our lock files, which never take content)."""
    real = _real(out)
    try:
        st = os.stat(out)
    except OSError:
        st = None
    for inp in inputs:
        ri = _real(inp)
        if ri == real:
            return str(inp)
        try:
            si = os.stat(inp)
        except OSError:
            continue
        if st is not None and _same(st, si):
            return str(inp)
        if tree and stat.S_ISDIR(si.st_mode) and st is not None and ri in real.parents:
            return str(inp)  # an existing file inside an input folder (a named data set's files)
    return None


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _check_one(out: Path, inputs: list, flag: str, want_dir: bool, tree: bool = True) -> None:
    hit = _clash(out, inputs, tree)
    if hit is not None:
        raise OutputError(f"{flag} {out} would overwrite the input {hit}; choose another path")
    try:
        st = os.stat(out)
    except FileNotFoundError:
        if os.path.islink(out):
            raise OutputError(f"{flag} {out} is a dangling symbolic link") from None
        return
    except OSError as e:
        raise OutputError(f"{flag} {out}: {os_error_line(e)}") from None
    if want_dir and not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{flag} {out} exists and is not a folder")
    if not want_dir and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (device, fifo or socket)"
        raise OutputError(f"{flag} {out} is {kind}; give a file path")


def _check_folder(out: Path, flag: str) -> None:
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{flag} {out}: the folder {folder} does not exist")


def check_file_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                      flag: str = "--out", companions: Iterable[str] = ()) -> Path:
    """Refuse (OutputError) a file output that is an input or not a regular file; returns it as a Path.

    ``companions``: suffixes of the side files the command writes next to it (e.g. ``.partial``);
    they and the lock file are checked the same way.
    """
    out = Path(out)
    inputs = list(inputs)
    _check_folder(out, flag)
    _check_one(_lock_path(out), inputs, flag, want_dir=False, tree=False)
    for p in [out, *(out.with_name(out.name + s) for s in companions)]:
        _check_one(p, inputs, flag, want_dir=False)
    return out


def check_dir_output(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), *,
                     flag: str = "--out") -> Path:
    """Refuse a folder output that is a file, is or contains an input, or holds an entry that is a
    link to an input or not a regular file or folder (the command writes files into it by name);
    returns it. Missing parent folders are fine: the commands that write folders create them."""
    out = Path(out)
    inputs = list(inputs)
    _check_one(out, inputs, flag, want_dir=True)
    _check_one(_lock_path(out.absolute()), inputs, flag, want_dir=False, tree=False)
    real = _real(out)
    for inp in inputs:
        if real == _real(inp) or real in _real(inp).parents:
            raise OutputError(f"{flag} {out} contains the input {inp}; choose a folder of its own")
    if out.is_dir():
        for entry in out.iterdir():
            if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
                _check_one(entry, inputs, flag, want_dir=entry.is_dir())
    return out


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, *, make_parents: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` (file ``.NAME.lock`` beside it) for the block.

    ``make_parents``: create the missing parent folders first (for commands that create them anyway).

    Non-blocking: OutputBusy at once when another process holds it. The lock file is removed on
    release (while still locked; a waiter that opened the old file notices the inode change).
    """
    out = Path(out).absolute()
    lock = _lock_path(out)
    if make_parents:
        lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = _same(os.fstat(fd), os.stat(lock))
        except (BlockingIOError, FileNotFoundError):
            held = False
        if not held:
            raise OutputBusy(f"another run is writing {out} (lock {lock.name}); wait for it to finish")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock)
    finally:
        os.close(fd)


@contextlib.contextmanager
def removed_on_error(folder: str | os.PathLike, *, tree: bool, keep: tuple[type[BaseException], ...] = ()
                     ) -> Iterator[None]:
    """On an exception (other than KEEP), remove FOLDER and its parents if this block created them.

    ``tree``: FOLDER is the command's own output folder and is removed with everything in it (the
    run's partial outputs); otherwise only folders left empty are removed (``rmdir``). A folder that
    existed before the block is never touched. Used by the commands that write a folder, so a refused
    or failed run leaves nothing behind; KEEP names errors whose outputs are evidence (the soundness
    alarm keeps both files).
    """
    folder = Path(folder).absolute()
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        yield
    except keep:
        raise
    except BaseException:
        for p in created:  # deepest first
            with contextlib.suppress(OSError):
                if tree and p == folder and p.is_dir() and not p.is_symlink():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.rmdir()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temp file beside ``path`` for writing; on success fsync it and rename it over ``path``.

    On any exception the temp file is removed and ``path`` is untouched. ``mode``: "w" or "wb".
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`); returns the path."""
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)
