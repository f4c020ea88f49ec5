"""JIT build and load of the C++ CPU kernels, safe under concurrent builds.

`load_cpu_extension()` returns the compiled module or None, and `build_status()` says why.
The build runs once per machine and (sources, compiler flags, torch and Python version) into
`$LINFVERIFY_CACHE_DIR` (default `$XDG_CACHE_HOME/linfverify/kernels`, i.e.
`~/.cache/linfverify/kernels`) under `<variant>-<hash>/`, compiled from a copy of the sources in that
folder, so a second checkout or venv reuses it (imported directly, no ninja run); the first build says
so on stderr. An exclusive `fcntl` lock on a file next to that folder serialises concurrent builds (a
second process waits, then imports the finished build).
Flags: `-O3 -fopenmp` plus `-mavx2 -mfma` when the CPU supports AVX2 (runtime check), never
`-ffast-math` (gcc links crtfastmath, which sets FTZ/DAZ process-wide and breaks soundness near 0).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import sys
import threading
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
SOURCES = ("lp_dist.cpp",)
HEADERS = ("simd.h", "pow_split.h", "parallel.h", "lp_dist_fwd.h", "lp_dist_bwd.h")
BASE_CFLAGS = ("-O3", "-fopenmp", "-fno-fast-math", "-std=c++17")
AVX2_CFLAGS = ("-mavx2", "-mfma")
# The optional "avx512" build: 64-byte vectors. Used only for the finite-p kernels (1.4-1.6x faster
# there on an AVX-512 CPU); the p = inf kernels stay on the AVX2 build, which is faster for them.
WIDE_CFLAGS = ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-DLPK_WIDE")
WIDE_ENV = "LINFVERIFY_WIDE"
LDFLAGS = ("-fopenmp",)

_lock = threading.Lock()
_state: dict = {"done": False, "module": None, "variant": None, "reason": "not built yet"}
_wide: dict = {"done": False, "module": None, "reason": "not built yet"}


def cpu_has_avx2() -> bool:
    """True when this CPU runs AVX2+FMA code (torch's runtime CPU capability, /proc/cpuinfo fallback)."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
        if cap in ("AVX2", "AVX512"):
            return True
        if cap in ("DEFAULT", "NO AVX", "ZVECTOR", "VSX"):
            return False
    except Exception:  # noqa: BLE001 - capability probing is best effort
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        return "avx2" in flags and "fma" in flags
    except OSError:
        return False


def cpu_has_avx512() -> bool:
    """True when this CPU (and OS) run AVX-512 F/DQ/VL/BW code."""
    try:
        if torch.backends.cpu.get_cpu_capability() != "AVX512":
            return False
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except Exception:  # noqa: BLE001 - no capability or no /proc: do not use AVX-512
        return False
    return {"avx512f", "avx512dq", "avx512vl", "avx512bw"} <= flags


VARIANT_ENV = "LINFVERIFY_CPU_VARIANT"


def variant() -> str:
    """"avx2" on x86-64 CPUs with AVX2+FMA, else "generic" (LINFVERIFY_CPU_VARIANT=generic forces it)."""
    if os.environ.get(VARIANT_ENV, "").strip().lower() == "generic":
        return "generic"
    if platform.machine().lower() in ("x86_64", "amd64") and cpu_has_avx2():
        return "avx2"
    return "generic"


def cflags(var: str) -> list[str]:
    """Compiler flags of a build variant ("avx2", "avx512" or "generic"); never -ffast-math."""
    flags = list(BASE_CFLAGS)
    if var in ("avx2", "avx512"):
        flags += list(AVX2_CFLAGS)
    if var == "avx512":
        flags += list(WIDE_CFLAGS)
    return flags


def cache_root() -> Path:
    env = os.environ.get("LINFVERIFY_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "linfverify" / "kernels"


def source_hash(var: str, src_dir: Path = _HERE) -> str:
    """Hash of what determines the binary: the sources' contents, the flags (which encode the CPU
    features the variant targets), torch's version, Python's version and the machine type. Not the
    checkout path, the venv or which ninja is on PATH: every checkout on a machine shares one build."""
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update(name.encode())
        h.update((Path(src_dir) / name).read_bytes())
    h.update(" ".join(cflags(var) + list(LDFLAGS)).encode())
    h.update(torch.__version__.encode())
    h.update(sys.version.encode())
    h.update(platform.machine().encode())
    return h.hexdigest()[:16]


def build_target(var: str, src_dir: Path = _HERE) -> tuple[str, Path]:
    """(module name, build folder) of a variant: a function of `source_hash` only."""
    digest = source_hash(var, src_dir)
    return f"linfverify_lp_{var}_{digest}", cache_root() / f"{var}-{digest}"


COMPILING_MESSAGE = "linfverify: compiling the C++ distance kernels once for this machine (~1 min)…"
_DONE = "BUILT"  # written into the build folder after a successful build and import


def _why_no_compiler() -> str | None:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler ({cxx!r} not on PATH)"
    try:
        from torch.utils.cpp_extension import verify_ninja_availability

        verify_ninja_availability()
    except Exception:  # noqa: BLE001
        return "ninja is not installed (pip install ninja)"
    return None


class _NoCompiler(Exception):
    """No C++ compiler or ninja here, and no finished build in the cache."""


def _try_build(var: str, what: str):
    """(module, None) or (None, why not)."""
    try:
        return _build(var), None
    except _NoCompiler as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any build failure means "use the reference"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return None, f"{what} failed: {first[:200]}"


def _import_built(name: str, build_dir: Path):
    """Import a finished build's module straight from its file (no ninja, no rebuild check)."""
    import importlib.util

    from torch.utils.cpp_extension import LIB_EXT

    spec = importlib.util.spec_from_file_location(name, build_dir / f"{name}{LIB_EXT}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compile(var: str, name: str, build_dir: Path, src_dir: Path):
    """Copy the sources into the build folder and compile there, so that the build commands name only
    paths inside the cache (ninja would otherwise rebuild for a checkout at another path)."""
    from torch.utils.cpp_extension import load

    print(COMPILING_MESSAGE, file=sys.stderr, flush=True)
    src = build_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    for f in SOURCES + HEADERS:
        shutil.copyfile(Path(src_dir) / f, src / f)
    return load(name=name, sources=[str(src / f) for f in SOURCES], extra_cflags=cflags(var),
                extra_ldflags=list(LDFLAGS), extra_include_paths=[str(src)],
                build_directory=str(build_dir), verbose=False)


def _build(var: str, src_dir: Path = _HERE):
    """The variant's module: imported from the machine's cache when built already, else compiled once
    (an exclusive lock serialises concurrent builders; a waiting process then imports the result)."""
    import fcntl

    name, build_dir = build_target(var, src_dir)
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{build_dir.name}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # a concurrent builder finishes first; we then reuse it
        try:
            if (build_dir / _DONE).exists():
                return _import_built(name, build_dir)
            why = _why_no_compiler()  # needed only now: a finished build imports without them
            if why is not None:
                raise _NoCompiler(why)
            # torch's own build baton (``lock`` in the build folder) outlives a killed build and then
            # blocks every later build forever; under our flock no other builder is running, so it is stale
            (build_dir / "lock").unlink(missing_ok=True)
            module = _compile(var, name, build_dir, Path(src_dir))
            (build_dir / _DONE).write_text(f"{name}\n")
            return module
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)


def load_cpu_extension():
    """The compiled kernels module, building it on first use; None when it cannot be built."""
    with _lock:
        if _state["done"]:
            return _state["module"]
        var = variant()
        module, reason = _try_build(var, "C++ build")
        if module is not None and not module.has_openmp():
            reason = "built without OpenMP"  # still correct, runs single-threaded
        _state.update(done=True, module=module, variant=var,
                      reason=reason if module is None else (reason or "ok"))
        return module


def load_wide_extension():
    """The AVX-512 build for the finite-p kernels, or None (no AVX-512, generic variant, build
    failure, or LINFVERIFY_WIDE=0). Built on first use like the main one, with the same lock."""
    with _lock:
        if _wide["done"]:
            return _wide["module"]
        module, reason = None, "ok"
        if os.environ.get(WIDE_ENV, "").strip().lower() in ("0", "off", "no", "false"):
            reason = f"disabled by {WIDE_ENV}"
        elif variant() != "avx2" or not cpu_has_avx512():
            reason = "CPU without AVX-512"
        else:
            module, reason = _try_build("avx512", "AVX-512 build")
            reason = reason or "ok"
        _wide.update(done=True, module=module, reason=reason)
        return module


def wide_status() -> str:
    """"avx512" when the finite-p kernels run on the AVX-512 build, else why not (builds it if needed)."""
    return "avx512" if load_wide_extension() is not None else _wide["reason"]


def build_status() -> tuple[str | None, str]:
    """(variant or None when unavailable, reason). Triggers the build if not attempted yet."""
    module = load_cpu_extension()
    return (_state["variant"] if module is not None else None), _state["reason"]
