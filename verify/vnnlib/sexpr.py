"""A small s-expression reader for VNN-LIB 1.0 (an SMT-LIB subset); nothing is evaluated here.

``read_sexprs(text)`` returns the top-level forms: an atom is a ``str`` (symbol or number text,
kept as written so numbers can be converted exactly), a list is a Python list. ``;`` starts a
comment to the end of the line; ``|quoted symbols|`` and strings are not part of VNN-LIB 1.0 and
are refused. Every error is one line (:class:`common.errors.PropertyError`) naming the line.
"""

from __future__ import annotations

import re
from fractions import Fraction

from common.errors import PropertyError

__all__ = ["read_sexprs", "number"]

_TOKEN = re.compile(r"\s+|;[^\n]*|\(|\)|[^\s();|\"]+|[|\"]")  # covers every character
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
MAX_DEPTH = 200
MAX_DIGITS = 4000  # below Python's int_max_str_digits (4300); the exact decimal of any float64 fits
MAX_EXPONENT = 2000  # 10**2000 costs µs; 10**999999999 (written "1e999999999") minutes


def read_sexprs(text: str) -> list:
    """The top-level forms of ``text`` (see the module docstring)."""
    stack: list[list] = [[]]
    line = 1
    open_lines: list[int] = []
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.isspace() or tok.startswith(";"):
            line += tok.count("\n")
            continue
        if tok == "(":
            if len(stack) > MAX_DEPTH:
                raise PropertyError(f"line {line}: expressions nested deeper than {MAX_DEPTH}")
            stack.append([])
            open_lines.append(line)
        elif tok == ")":
            if len(stack) == 1:
                raise PropertyError(f"line {line}: unbalanced ')'")
            done = stack.pop()
            open_lines.pop()
            stack[-1].append(done)
        elif tok in ("|", '"'):
            raise PropertyError(f"line {line}: quoted symbols and strings are not VNN-LIB 1.0")
        else:
            stack[-1].append(tok)
    if len(stack) != 1:
        raise PropertyError(f"line {open_lines[-1]}: '(' is never closed")
    return stack[0]


def number(tok) -> Fraction | None:
    """The exact rational value of a decimal numeral (``12``, ``-0.5``, ``1e-05``, ``.5E+3``), or
    None when ``tok`` is not one (symbols, lists, ``inf``/``nan``, hexadecimal). A numeral of more
    than :data:`MAX_DIGITS` digits or with an exponent beyond ±:data:`MAX_EXPONENT` is refused
    (PropertyError): converting it exactly would take minutes, or fail inside Python."""
    m = _NUMBER.fullmatch(tok) if isinstance(tok, str) else None
    if m is None:
        return None
    exp = (m.group(2) or "e0")[1:].lstrip("+-").lstrip("0")
    if sum(c.isdigit() for c in m.group(1)) > MAX_DIGITS or len(exp) > 6 or int(exp or 0) > MAX_EXPONENT:
        shown = tok if len(tok) <= 40 else tok[:37] + "..."
        raise PropertyError(f"the number {shown} is out of range (at most {MAX_DIGITS} digits and "
                            f"exponents within ±{MAX_EXPONENT})")
    return Fraction(tok)
