"""VNN-LIB 1.0 properties (VNN-COMP 2021–2024) as input boxes and linear output conditions.

A property file declares ``X_0 … X_{n-1}`` (the model input, flattened in C order) and ``Y_0 …
Y_{k-1}`` (the output) as ``Real`` constants and asserts formulas over them. The assertions are
conjoined; formulas are ``and``/``or`` of comparisons (``<= >= < > =``) between linear terms
(numbers, variables, ``+``, ``-``, ``*`` by a constant, ``/`` by a constant). The property holds
("sat") when some input satisfies every assertion; a verifier answers ``unsat`` when none does.

:func:`parse_property` puts the conjunction in disjunctive normal form and splits each term into
its *box* (atoms on a single input variable, e.g. ``(<= X_3 0.5)``) and its *condition* (every
other atom: anything with a Y, or several X). Terms with the same box are grouped into one
:class:`Case`: a box and a disjunction of conjunctions of linear inequalities ``c·(y, x) ≤ r``
(``<`` when strict). This covers the single box with an ``or`` of output conjunctions, and several
boxes written as a top-level ``or`` of ``and``s over X. Every number is kept as an exact rational
(the decimal as written); :meth:`Case.outer_box` rounds the bounds outwards to float32 (a superset
of the real box: what a proof covers), :meth:`Case.inner_box` inwards (a subset: where a witness
is searched, so that it satisfies the bounds as written, exactly).

An input variable without a lower or an upper bound in some box is refused: an unbounded input is
never treated as bounded (nor proved over). Errors are one-line :class:`PropertyError`.
A file that starts with ``(vnnlib-version …)`` is VNN-LIB 2.0: read by verify/vnnlib/spec2.py
(the optional ``vnnlib`` package) into the same :class:`Property`.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib

from common.errors import PropertyError
from verify.vnnlib.cases import (Atom, Case, Property, _count, _declare, _show, build_cases, f32_above,  # noqa: F401
                                 f32_below, to_float)
from verify.vnnlib.sexpr import read_sexprs

__all__ = ["Atom", "Case", "Property", "parse_property", "read_property", "build_cases", "f32_below",
           "f32_above", "to_float"]

MAX_BYTES = 512 * 2**20
_IGNORED = {"check-sat", "get-model", "set-logic", "set-info", "set-option", "exit"}
_V2_START = re.compile(r"\A(?:\s|;[^\n]*)*\(\s*vnnlib-version\b")
_V2 = {"vnnlib-version", "declare-network", "declare-input", "declare-output", "declare-hidden"}


# ---- reading ----

def read_property(path: str | os.PathLike) -> Property:
    """Read and parse a VNN-LIB file (``.gz`` compressed too: decompressed only up to the size
    limit, so a small file inflating to gigabytes is refused without being inflated)."""
    try:
        with open(path, "rb") as f:
            if str(path).endswith(".gz"):
                with gzip.GzipFile(fileobj=f) as g:
                    raw = g.read(MAX_BYTES + 1)
            else:
                raw = f.read(MAX_BYTES + 1)
    except zlib.error as e:
        raise PropertyError(f"cannot read the property {os.fspath(path)}: corrupt gzip data ({e})") from None
    except (OSError, EOFError) as e:
        raise PropertyError(f"cannot read the property {os.fspath(path)}: {getattr(e, 'strerror', None) or e}") from None
    if len(raw) > MAX_BYTES:
        raise PropertyError(f"the property file is larger than {MAX_BYTES >> 20} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PropertyError("the property file is not UTF-8 text") from None
    return parse_property(text)


def parse_property(text: str) -> Property:
    """Parse VNN-LIB 1.0 text, or 2.0 text through verify/vnnlib/spec2.py (module docstring)."""
    if _V2_START.match(text):
        from verify.vnnlib.spec2 import parse_v2

        return parse_v2(text)
    names: dict[str, None] = {}
    formulas = []
    for form in read_sexprs(text):
        if not isinstance(form, list) or not form or not isinstance(form[0], str):
            raise PropertyError(f"expected a command such as (declare-const ...) or (assert ...), got {_show(form)}")
        head = form[0]
        if head == "declare-const":
            _declare(form, names)
        elif head == "assert" and len(form) == 2:
            formulas.append(form[1])
        elif head in _V2:
            raise PropertyError(f"({head} ...) is VNN-LIB 2.0, whose files start with (vnnlib-version <2.0>)")
        elif head not in _IGNORED:
            raise PropertyError(f"unsupported command {_show(form)}")
    n_x, n_y = (_count(names, v) for v in "XY")
    if n_y == 0:
        raise PropertyError("the property declares no output variable Y_0")
    return Property(n_x, n_y, build_cases(formulas, n_x, n_y))
