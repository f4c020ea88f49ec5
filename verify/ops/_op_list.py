"""The op registry: (domain, op_type) -> class, derived from the files of this folder.

One op = one file ``verify/ops/op_<op_type in lower case>.py`` defining one :class:`Op` subclass named
after the ONNX op_type (domain "" for ONNX's default domain, "linf" for ours). Adding the file is
the whole registration: nothing else lists ops. Files whose names start with ``_`` hold helpers.
A file that breaks the naming rule, or two files claiming one (domain, op_type), fail the import.
"""

from __future__ import annotations

import importlib
import pkgutil

import verify.ops as _package
from verify.ops.base import Op


def discover(package) -> dict[tuple[str, str], type[Op]]:
    """The registry of the ``op_*.py`` files of ``package`` (see the module docstring)."""
    ops: dict[tuple[str, str], type[Op]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("op_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        defined = [c for c in vars(module).values()
                   if isinstance(c, type) and issubclass(c, Op) and c.__module__ == module.__name__]
        if len(defined) != 1:
            raise ImportError(f"{module.__name__} must define exactly one Op class, found {len(defined)}")
        (cls,) = defined
        if cls.__name__ != cls.op_type or info.name != f"op_{cls.op_type.lower()}":
            raise ImportError(f"{module.__name__}: class {cls.__name__} (op_type {cls.op_type!r}) must be "
                              f"named after its op_type, in a file op_{cls.op_type.lower()}.py")
        key = (cls.domain, cls.op_type)
        if key in ops:
            raise ImportError(f"two classes for {key}: {ops[key].__module__} and {module.__name__}")
        ops[key] = cls
    return ops


OPS: dict[tuple[str, str], type[Op]] = discover(_package)


def supported_ops() -> list[str]:
    """Sorted names ``domain::op_type`` (``op_type`` alone for the default domain)."""
    return sorted(f"{d}::{t}" if d else t for d, t in OPS)
