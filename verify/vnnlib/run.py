"""One VNN-COMP instance: a model, a VNN-LIB property, a time limit -> ``unsat``/``sat``/``unknown``/``timeout``.

:func:`run_instance` loads the model (verify.front.model.load_model, the one front-end) and the property
(verify/vnnlib/spec.py), checks that they fit (number of inputs and outputs), then per case:
the proof ladder first (verify/vnnlib/prove.py, cheap), and, for the cases it cannot prove, the
witness search (verify/vnnlib/falsify.py). ``unsat`` only when every case is proved; ``sat`` only
with a witness onnxruntime replayed (it is replayed once more, from its printed text, before the
result is returned: what is written is what was checked); ``timeout`` when the time limit stopped
the search; else ``unknown``.

:func:`result_text` is VNN-COMP's results file: the verdict on the first line, for ``sat`` the
witness as ``((X_0 v) … (Y_0 v) …)``, each value printed with ``repr`` of the float32 value widened
to float64, which parses back to exactly that float32.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from common.errors import ModelError, PropertyError
from verify.guarantee import DEFAULT, check_guarantee
from verify.vnnlib.falsify import Witness, find_witness, replay
from verify.vnnlib.prove import LADDER, prove
from verify.vnnlib.spec import Property, read_property

__all__ = ["VnnResult", "run_instance", "result_text", "parse_witness", "check_fit"]


@dataclass
class VnnResult:
    verdict: str  # unsat | sat | unknown | timeout
    seconds: float
    method: str = ""  # the proof's rungs, or "pgd" for a witness
    guarantee: str = ""  # unsat: what the proof holds for (real | float32, verify/guarantee.py); sat: "onnxruntime"
    cases: int = 0
    proved_cases: int = 0
    witness: Witness | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        out = {"verdict": self.verdict, "seconds": round(self.seconds, 3), "method": self.method,
               "guarantee": self.guarantee, "cases": self.cases, "proved_cases": self.proved_cases}
        if self.notes:
            out["notes"] = list(self.notes)
        if self.witness is not None:
            out["witness"] = {"case": self.witness.case, "disjunct": self.witness.disjunct,
                              "x": [float(v) for v in self.witness.x], "y": [float(v) for v in self.witness.y]}
        return out


def check_fit(model, prop: Property) -> None:
    """PropertyError unless the property's X/Y match the model's input size and output count (and,
    for VNN-LIB 2.0, its declared shapes match the model's)."""
    from verify.vnnlib.spec2 import check_shapes

    n_in = math.prod(model.input_shape)
    if prop.n_x != n_in:
        raise PropertyError(f"the property declares {prop.n_x} inputs X_i, the model takes {n_in}")
    if prop.n_y != model.num_classes:
        raise PropertyError(f"the property declares {prop.n_y} outputs Y_j, the model has {model.num_classes}")
    check_shapes(prop, model.input_shape, model.num_classes)


def run_instance(model_path, prop_path, timeout: float = 60.0, *, seed: int = 0, ladder=LADDER,
                 restarts: int = 4, steps: int = 100, model=None, guarantee: str = DEFAULT) -> VnnResult:
    """Decide one instance within about ``timeout`` seconds (see the module docstring); ``unsat``
    is proved under ``guarantee`` (real | float32); ``sat`` is onnxruntime's replayed witness
    whatever the guarantee."""
    from verify.attack.torch_graph import TorchGraph
    from verify.front.model import load_model
    from common.runtime import ort_session

    check_guarantee(guarantee)
    t0 = time.monotonic()
    deadline = t0 + float(timeout)
    model = model or load_model(model_path)
    prop = read_property(prop_path)
    check_fit(model, prop)
    res = VnnResult("unknown", 0.0, cases=len(prop.cases))
    open_cases = []
    methods = set()
    for i, case in enumerate(prop.cases):
        proof = prove(model, case, ladder, deadline, guarantee)
        if proof is None:
            open_cases.append(i)
        else:
            res.proved_cases += 1
            methods.add(proof.method)
        if time.monotonic() >= deadline:
            return _done(res, "timeout", t0)
    if not open_cases:
        res.method, res.guarantee = "+".join(sorted(methods)) or "empty", guarantee
        return _done(res, "unsat", t0)
    try:
        tg = TorchGraph(model)  # the model proved above, not a second read of the file
    except ModelError as e:  # the verifier reads more ops than the attack: no search, no verdict
        res.notes.append(f"no witness search: {e}"[:300])
        return _done(res, "unknown", t0)
    sess = ort_session(model_path)
    finished = True
    for i in open_cases:
        w, done = find_witness(tg, sess, prop.cases[i], i, deadline, steps=steps, restarts=restarts, seed=seed)
        finished &= done
        if w is not None and _replays_as_written(sess, prop, w, model.input_shape):
            res.witness, res.method, res.guarantee = w, "pgd", "onnxruntime"
            return _done(res, "sat", t0)
    return _done(res, "unknown" if finished else "timeout", t0)


def _done(res: VnnResult, verdict: str, t0: float) -> VnnResult:
    res.verdict = verdict
    res.seconds = time.monotonic() - t0
    return res


def _replays_as_written(sess, prop: Property, w: Witness, input_shape) -> bool:
    """The witness, read back from its own printed text, replays in onnxruntime to the printed outputs."""
    x, y = parse_witness(_witness_lines(w), prop.n_x, prop.n_y)
    if not (np.array_equal(x, w.x.astype(np.float64)) and np.array_equal(y, w.y.astype(np.float64))):
        return False  # printing did not round-trip
    again = replay(sess, prop.cases[w.case], w.case, x.astype(np.float32).reshape(input_shape))
    return again is not None and np.array_equal(again.y, w.y)


def _witness_lines(w: Witness) -> str:
    xs = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(w.x, np.float32))]
    ys = [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(w.y, np.float32))]
    return "(" + "\n".join(xs + ys) + ")\n"


def result_text(res: VnnResult) -> str:
    """The VNN-COMP results file for ``res``."""
    if res.verdict == "sat":
        return "sat\n" + _witness_lines(res.witness)
    return res.verdict + "\n"


def parse_witness(text: str, n_x: int, n_y: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float64, exactly as written, from a VNN-COMP witness ``((X_0 v) … (Y_0 v) …)`` (the
    verdict line, if any, is skipped); PropertyError if a value is missing or repeated."""
    from verify.vnnlib.sexpr import number, read_sexprs

    head, _, rest = text.lstrip().partition("\n")
    body = rest if head.strip() in ("sat", "unsat") else text
    forms = read_sexprs(body)
    pairs = forms[0] if len(forms) == 1 and isinstance(forms[0], list) else forms
    vals: dict[str, float] = {}
    for p in pairs:
        v = number(p[1]) if isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) else None
        if v is None or p[0] in vals:
            raise PropertyError(f"bad or repeated witness entry {p!r}"[:120])
        vals[p[0]] = float(p[1])  # the decimal correctly rounded, as float(v), and -0.0 kept
    x, y = (np.array([vals.get(f"{k}_{i}", np.nan) for i in range(n)], np.float64) for k, n in (("X", n_x), ("Y", n_y)))
    if np.isnan(x).any() or np.isnan(y).any():
        raise PropertyError("the witness does not give every X_i and Y_j")
    return x, y


def write_result(path, res: VnnResult) -> None:
    """Write the results file atomically (common/outputs.py: never half-written)."""
    from common.outputs import atomic_file

    with atomic_file(path) as f:
        f.write(result_text(res))


def replay_text(sess, prop: Property, text: str, input_shape, outer: bool = False) -> Witness | None:
    """A witness text (ours or another tool's counterexample) checked on its own: its X rounded to
    float32 (what onnxruntime is fed) must lie in some case's box exactly and onnxruntime's outputs
    there must satisfy that case's condition exactly; the Y it states are not trusted. ``outer``:
    the box is the outward-rounded float32 box an ``unsat`` proof covers (tools print the bound
    0.03 as float32(0.03), a hair above the decimal the file wrote)."""
    x, _ = parse_witness(text, prop.n_x, prop.n_y)
    x32 = x.astype(np.float32).reshape(input_shape)
    for i, case in enumerate(prop.cases):
        w = replay(sess, case, i, x32, outer)
        if w is not None:
            return w
    return None
