"""VNN-LIB 2.0 properties, read with PyPI's ``vnnlib`` package (optional: ``linfverify[vnnlib2]``).

A 2.0 file starts with ``(vnnlib-version <2.0>)`` and declares a network with typed, shaped
tensors: ``(declare-network N (declare-input X float32 [1, 2]) (declare-output Y float32 [1, 3]))``;
assertions index them (``X[0,1]``). The package parses and type-checks the file; this module walks
the typed syntax tree it returns (never ``vnnlib.compat.transform``, which splits one
``(assert (and …))`` of input bounds into a case with no bounds and a case with no condition)
and rewrites every assertion into the 1.0 form that verify/vnnlib/spec.py reads: ``X[i,j]``
becomes ``X_k`` with k the C-order flat index, ``Y[…]`` likewise. The same code as for 1.0 then
builds the disjunctive normal form, the boxes and the cases (:class:`verify.vnnlib.spec.Property`),
so proofs, witness search and replay are unchanged.

Numbers. Every literal is read from its **text** (the package keeps it as ``lexeme``) as the exact
rational of the decimal, and checked against the float64 the package parsed (they must agree after
rounding to nearest; otherwise the file is refused): the box and the conditions are those the file
writes, exactly, as for 1.0, and outward/inward float32 rounding of the bounds is 1.0's.
Arithmetic in assertions is read over the real numbers whatever element type is declared (``real``,
``float32``, ``float64``; others are refused).

Refused, one line each: the package missing (``pip install "linfverify[vnnlib2]"``), a parse or type
error (the package's first error), several networks, several inputs or outputs, hidden tensors,
other element types, ``!=``, nonlinear terms, an input without a finite lower and upper bound in
some box. :func:`check_shapes` compares the declared shapes with the model's.
"""

from __future__ import annotations

import json
import math
import re

from common.errors import PropertyError

__all__ = ["parse_v2", "check_shapes", "INSTALL_HINT"]

INSTALL_HINT = 'pip install "linfverify[vnnlib2]"'
MAX_DEPTH = 200
MAX_ELEMENTS = 2**24  # declared tensor sizes (a shape is a few characters; the box is a list per element)
_TYPES = {"Real", "F32", "F64"}
_CMP = {"LessEqual": "<=", "LessThan": "<", "GreaterEqual": ">=", "GreaterThan": ">", "Equal": "="}
_CONN = {"And": "and", "Or": "or"}
_PAREN = re.compile(r";[^\n]*|[()]")  # comments skipped; parens in strings only over-count


def _package():
    try:
        import vnnlib
    except ImportError:
        raise PropertyError(f"VNN-LIB 2.0 files are read with the optional `vnnlib` package: {INSTALL_HINT}") from None
    return vnnlib


def parse_v2(text: str):
    """A :class:`verify.vnnlib.spec.Property` from VNN-LIB 2.0 text (see the module docstring)."""
    from verify.vnnlib.cases import Property, build_cases

    vnnlib = _package()
    _check_text(text)
    try:
        query = vnnlib.parse_query_string(text)
    except vnnlib.VNNLibException as e:
        raise PropertyError(f"VNN-LIB 2.0: {_first_error(str(e))}") from None
    except Exception as e:  # noqa: BLE001 - C++ std:: errors, e.g. IndexError("stoll") on a huge index
        raise PropertyError(f"VNN-LIB 2.0: the vnnlib package cannot read it ({type(e).__name__}: "
                            f"{_first_error(str(e))}; a number out of range?)") from None
    nets = query.networks
    if len(nets) != 1:
        raise PropertyError(f"the property declares {len(nets)} networks; one model is verified at a time")
    net = nets[0]
    if len(net.inputs) != 1 or len(net.outputs) != 1:
        raise PropertyError(f"network {net.name} declares {len(net.inputs)} inputs and {len(net.outputs)} "
                            "outputs; one input and one output tensor are supported")
    if len(net.hidden):
        raise PropertyError(f"network {net.name}: hidden tensors (declare-hidden) are not supported")
    x, y = net.inputs[0], net.outputs[0]
    for d in (x, y):
        if d.dtype.name not in _TYPES:
            raise PropertyError(f"{d.name}: element type {d.dtype.name} is not supported (real, float32, float64)")
    shapes = {x.name: ("X", list(x.shape)), y.name: ("Y", list(y.shape))}
    formulas = [_formula(a.expr, shapes, 0) for a in query.assertions]
    n_x, n_y = math.prod(x.shape), math.prod(y.shape)
    if not (0 < n_x <= MAX_ELEMENTS and 0 < n_y <= MAX_ELEMENTS):
        raise PropertyError(f"the property declares {n_x} inputs and {n_y} outputs (1 to {MAX_ELEMENTS} each)")
    return Property(n_x, n_y, build_cases(formulas, n_x, n_y), tuple(x.shape), tuple(y.shape))


def _check_text(text: str) -> None:
    """Refuse, before the package sees them, texts it mishandles: a NUL character (its parser stops
    there: what follows would be silently dropped) and deep nesting (its parser crashes, SIGSEGV)."""
    if "\x00" in text:
        raise PropertyError(f"line {text.count(chr(10), 0, text.index(chr(0))) + 1}: NUL character in the property")
    depth = 0
    for m in _PAREN.finditer(text):
        tok = m.group()
        if tok == "(":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, m.start()) + 1
                raise PropertyError(f"line {line}: expressions nested deeper than {MAX_DEPTH}")
        elif tok == ")":
            depth -= 1


def _first_error(msg: str) -> str:
    """The package's message on one line: its first error when it reports JSON."""
    try:
        err = json.loads(msg)["errors"][0]
        msg = f"line {err.get('line', '?')}: {err.get('message', '')}; {err.get('hint', '')}"
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    msg = " ".join(msg.split())
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _formula(e, shapes, depth):
    """The syntax tree node ``e`` as a 1.0 s-expression (lists of str, names X_k/Y_k)."""
    if depth > MAX_DEPTH:
        raise PropertyError(f"expressions nested deeper than {MAX_DEPTH}")
    kind = type(e).__name__
    sub = [_formula(c, shapes, depth + 1) for c in _args(e, kind)]
    if kind in _CMP:
        return [_CMP[kind], *sub]
    if kind in _CONN:
        return [_CONN[kind], *sub]
    if kind in ("Plus", "Minus", "Negate", "Multiply"):
        return [{"Plus": "+", "Multiply": "*"}.get(kind, "-"), *sub]
    if kind == "Var":
        if e.name not in shapes:
            raise PropertyError(f"line {e.line}: {e.name} is not the network's input or output")
        prefix, shape = shapes[e.name]
        idx = list(e.indices)
        if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape)):
            raise PropertyError(f"line {e.line}: index {idx} out of range for {e.name} of shape {shape}")
        flat = 0
        for i, n in zip(idx, shape):
            flat = flat * n + i
        return f"{prefix}_{flat}"
    if kind in ("Float", "Int"):
        return _literal(e)
    raise PropertyError(f"unsupported expression {str(e).strip()[:60]} ({kind})")


def _args(e, kind):
    if kind in _CMP:
        return (e.lhs, e.rhs)
    if kind == "Minus":
        return (e.head, *e.rest)
    if kind == "Negate":
        return (e.expr,)
    if kind in _CONN or kind in ("Plus", "Multiply"):
        return tuple(e.args)
    return ()


def _literal(e) -> str:
    """The literal's text, if it is a decimal whose nearest float64 is the package's value."""
    from verify.vnnlib.sexpr import number

    text = e.lexeme
    q = number(text)
    if q is None or float(q) != float(e.value):
        raise PropertyError(f"line {e.line}: literal {text!r} is not read the same by the vnnlib package "
                            f"({float(e.value)!r}) and by the exact reader")
    return text


def check_shapes(prop, input_shape, num_classes) -> None:
    """PropertyError unless the declared input shape is the model's (a leading batch dimension of 1
    allowed) and the declared output shape is ``[k]`` or ``[1, k]`` with k the model's outputs."""
    xs, ys = prop.x_shape, prop.y_shape
    if xs is None:
        return
    model_x = tuple(input_shape)
    if xs not in (model_x, (1, *model_x)):
        raise PropertyError(f"the property declares input shape {list(xs)}, the model takes "
                            f"{list(model_x)} (with or without a batch dimension of 1)")
    if ys not in ((num_classes,), (1, num_classes)):
        raise PropertyError(f"the property declares output shape {list(ys)}, the model has "
                            f"{num_classes} outputs ([{num_classes}] or [1, {num_classes}])")
