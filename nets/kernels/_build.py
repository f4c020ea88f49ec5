"""JIT build and load of the C++ CPU kernels, safe under concurrent builds.

`load_cpu_extension()` returns the compiled module or None, and `build_status()` says why.
The build runs once per (source hash, compiler flags, torch and Python version) into
`$LINFVERIFY_CACHE_DIR` (default `$XDG_CACHE_HOME/linfverify/kernels`, i.e.
`~/.cache/linfverify/kernels`) under `<variant>-<hash>/`; an exclusive `fcntl` lock on a file next to
that folder serialises concurrent builds (a second process waits, then loads the finished build).
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


def source_hash(var: str) -> str:
    """Hash of the sources, flags, torch/Python versions: a change of any gives a fresh build."""
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update(name.encode())
        h.update((_HERE / name).read_bytes())
    h.update(" ".join(cflags(var) + list(LDFLAGS)).encode())
    h.update(torch.__version__.encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


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


def _build(var: str):
    import fcntl

    from torch.utils.cpp_extension import load

    digest = source_hash(var)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    build_dir = root / f"{var}-{digest}"
    with open(root / f"{var}-{digest}.lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # a concurrent builder finishes first; we then reuse it
        try:
            build_dir.mkdir(exist_ok=True)
            return load(
                name=f"linfverify_lp_{var}_{digest}",
                sources=[str(_HERE / s) for s in SOURCES],
                extra_cflags=cflags(var),
                extra_ldflags=list(LDFLAGS),
                extra_include_paths=[str(_HERE)],
                build_directory=str(build_dir),
                verbose=False,
            )
        finally:
            fcntl.flock(lockf, fcntl.LOCK_UN)


def load_cpu_extension():
    """The compiled kernels module, building it on first use; None when it cannot be built."""
    with _lock:
        if _state["done"]:
            return _state["module"]
        var = variant()
        reason = _why_no_compiler()
        module = None
        if reason is None:
            try:
                module = _build(var)
                if not module.has_openmp():
                    reason = "built without OpenMP"  # still correct, runs single-threaded
            except Exception as e:  # noqa: BLE001 - any build failure means "use the reference"
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                reason = f"C++ build failed: {first[:200]}"
                module = None
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
        elif _why_no_compiler() is not None:
            reason = _why_no_compiler()
        else:
            try:
                module = _build("avx512")
            except Exception as e:  # noqa: BLE001 - fall back to the AVX2 build
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                reason = f"AVX-512 build failed: {first[:200]}"
        _wide.update(done=True, module=module, reason=reason)
        return module


def wide_status() -> str:
    """"avx512" when the finite-p kernels run on the AVX-512 build, else why not (builds it if needed)."""
    return "avx512" if load_wide_extension() is not None else _wide["reason"]


def build_status() -> tuple[str | None, str]:
    """(variant or None when unavailable, reason). Triggers the build if not attempted yet."""
    module = load_cpu_extension()
    return (_state["variant"] if module is not None else None), _state["reason"]
