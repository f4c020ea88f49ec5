"""Per-sample certificates: JSON Lines records, hashing, atomic and resumable writing.

A file is one run: its first line is the run's header (verify/certify/header.py), then one JSON object
per line and per sample (fields in :data:`REQUIRED_FIELDS`, see docs/SOUNDNESS.md for what each
claims), each agreeing with the header. Guarantees:

- :func:`read_sections` refuses a file without the header (an empty file included) and any record
  that disagrees with it (model, eps, domain, selection, method, status);

- floats are written with Python's ``repr`` (shortest round-trip), so reading a record back gives
  the bit-identical float64 values; non-finite ``margin_lower`` is written as ``null``;
- :func:`parse_record` rejects any record with a missing field, a wrong type, an unknown status, a
  negative/non-finite radius or eps, or a malformed hash, with a one-line ``CertificateError``;
- :class:`CertWriter` appends records to ``OUT.partial`` one batch at a time (flush + fsync per
  batch) and :meth:`CertWriter.finish` renames it to ``OUT`` (``os.replace``: atomic on POSIX), so
  ``OUT`` never exists half-written;
- :func:`resume_records` reads an interrupted ``OUT.partial``: its header must equal this run's; a
  torn (unterminated or unparsable) last line is dropped, any other bad line or a record that does
  not belong to this run (header disagreement, input hash or label) is refused, duplicates too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import CertificateError
from verify.certify.header import GUARANTEES, disagreement, parse_header

__all__ = [
    "STATUSES",
    "REQUIRED_FIELDS",
    "TOOL_VERSION",
    "input_sha256",
    "file_sha256",
    "tool_version",
    "record_to_line",
    "parse_record",
    "read_records",
    "read_sections",
    "header_line",
    "json_line",
    "resume_records",
    "CertWriter",
]

STATUSES = ("certified", "not_certified", "misclassified", "falsified", "unknown")
REQUIRED_FIELDS = (
    "index",
    "input_sha256",
    "label",
    "predicted",
    "eps",
    "status",
    "radius",
    "margin_lower",
    "method",
    "guarantee",
    "model_sha256",
    "tool_version",
    "domain",
    "shard",
    "n_total",
)
TOOL_VERSION = "0.1.0"


def tool_version() -> str:
    """The installed linfverify version, else the source constant."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("linfverify")
    except (ImportError, PackageNotFoundError):  # pragma: no cover - depends on install
        return TOOL_VERSION


def input_sha256(x: np.ndarray) -> str:
    """sha256 hex of the float32 C-order bytes of one sample (the array must already be float32)."""
    a = np.asarray(x)
    if a.dtype != np.float32:
        raise CertificateError(f"input must be float32 to hash, got {a.dtype}")
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json_float(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def record_to_line(rec: Mapping[str, Any]) -> str:
    """One JSON line (with trailing newline) for a record; validates it first."""
    parse_record(dict(rec), where="record to write")
    out = dict(rec)
    out["margin_lower"] = _json_float(out.get("margin_lower"))
    return json.dumps(out, allow_nan=False, separators=(", ", ": ")) + "\n"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_hex64(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def parse_record(obj: Any, *, where: str = "record") -> dict[str, Any]:
    """Validate one decoded record; returns it (floats as float). CertificateError on any defect."""
    if not isinstance(obj, dict):
        raise CertificateError(f"{where}: not a JSON object")
    missing = [k for k in REQUIRED_FIELDS if k not in obj]
    if missing:
        raise CertificateError(f"{where}: missing field(s) {', '.join(missing)}")
    for k in ("index", "label", "predicted"):
        if not _is_int(obj[k]) or obj[k] < 0:
            raise CertificateError(f"{where}: {k} must be a non-negative integer, got {obj[k]!r}")
    for k in ("input_sha256", "model_sha256"):
        if not _is_hex64(obj[k]):
            raise CertificateError(f"{where}: {k} is not a sha256 hex digest")
    if obj["status"] not in STATUSES:
        raise CertificateError(f"{where}: unknown status {obj['status']!r}")
    for k in ("eps", "radius"):
        if not _is_num(obj[k]) or not math.isfinite(obj[k]) or obj[k] < 0:
            raise CertificateError(f"{where}: {k} must be a finite number >= 0, got {obj[k]!r}")
        obj[k] = float(obj[k])
    m = obj["margin_lower"]
    if m is not None and not _is_num(m):
        raise CertificateError(f"{where}: margin_lower must be a number or null")
    obj["margin_lower"] = None if m is None else float(m)
    if not isinstance(obj["method"], str) or not isinstance(obj["tool_version"], str):
        raise CertificateError(f"{where}: method and tool_version must be strings")
    if obj["guarantee"] not in GUARANTEES:
        raise CertificateError(f"{where}: unknown guarantee {obj['guarantee']!r}")
    if obj["status"] == "misclassified" and obj["radius"] != 0.0:
        raise CertificateError(f"{where}: a misclassified sample must have radius 0")
    _parse_run_fields(obj, where)
    return obj


def _parse_run_fields(obj: dict[str, Any], where: str) -> None:
    d = obj["domain"]
    ok = isinstance(d, list) and len(d) == 2 and all(_is_num(v) and math.isfinite(v) for v in d)
    if not ok or not d[0] < d[1]:
        raise CertificateError(f"{where}: domain must be [lo, hi] with lo < hi")
    obj["domain"] = [float(d[0]), float(d[1])]
    s = obj["shard"]
    parts = s.split("/") if isinstance(s, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) < 19 for p in parts) or not int(parts[0]) < int(parts[1]):
        raise CertificateError(f"{where}: shard must be 'I/N' with 0 <= I < N, got {s!r}")
    if not _is_int(obj["n_total"]) or obj["n_total"] < 0:
        raise CertificateError(f"{where}: n_total must be a non-negative integer")


def _decode_line(line: str, where: str) -> dict[str, Any]:
    return parse_record(_json_object(line, where), where=where)


def _decode_header(line: str, where: str) -> dict[str, Any]:
    try:
        obj = json_line(line, where)
    except CertificateError:
        obj = None
    return parse_header(obj, where=where)


def header_line(header: Mapping[str, Any]) -> str:
    """The header as one JSON line (validated first)."""
    return json.dumps(parse_header(dict(header), where="header to write"), allow_nan=False,
                      separators=(", ", ": ")) + "\n"


def read_sections(path: str | os.PathLike) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """[(header, records)] of a complete file: a header line first (required), then records that
    each agree with the header above them. A file may hold several shard runs of ONE run
    (``cat`` of the ``--shard I/N`` files): every later header must equal the first except for its
    shard I (same N, each I once). CertificateError on any bad line, disagreement or duplicate."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CertificateError(f"certificate file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CertificateError(f"cannot read certificate file {p}: {e}") from None
    lines = text.splitlines()
    sections = [(_decode_header(lines[0] if lines else "", f"{p}:1"), [])]
    seen: set[int] = set()
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            raise CertificateError(f"{p}:{n}: empty line")
        obj = _json_object(line, f"{p}:{n}")
        if "format" in obj:
            sections.append((_next_shard(obj, sections, f"{p}:{n}"), []))
            continue
        rec = parse_record(obj, where=f"{p}:{n}")
        why = disagreement(rec, sections[-1][0])
        if why:
            raise CertificateError(f"{p}:{n}: record of index {rec['index']} disagrees with the header: {why}")
        if rec["index"] in seen:
            raise CertificateError(f"{p}:{n}: duplicate record for index {rec['index']}")
        seen.add(rec["index"])
        sections[-1][1].append(rec)
    return sections


INT_BOUND = 2**63  # |int| in a certificate line; larger ones are refused (float() would overflow)


def _bounded_int(s: str) -> int:
    if len(s) > 20 or abs(int(s)) >= INT_BOUND:
        raise ValueError("integer out of range")
    return int(s)


def _finite_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise ValueError("number out of range")
    return v


def _no_constant(s: str) -> Any:
    raise ValueError(f"{s} is not JSON")


def json_line(line: str, where: str) -> Any:
    """The ONE decoder of a line of a certificate / witness file: strict JSON (no NaN/Infinity),
    every float finite, every int below 2**63 in magnitude, any nesting depth that Python's parser
    cannot take refused. Any defect is a one-line CertificateError, never another exception."""
    try:
        return json.loads(line, parse_int=_bounded_int, parse_float=_finite_float,
                          parse_constant=_no_constant)
    except (ValueError, RecursionError, OverflowError, MemoryError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else "not valid JSON (or a number out of range)"
        raise CertificateError(f"{where}: {why}") from None


def _json_object(line: str, where: str) -> dict[str, Any]:
    obj = json_line(line, where)
    if not isinstance(obj, dict):
        raise CertificateError(f"{where}: not a JSON object")
    return obj


def _next_shard(obj, sections, where) -> dict[str, Any]:
    h = parse_header(obj, where=where)
    first = sections[0][0]
    shards = [s[0]["selection"]["shard"] for s in sections]
    mine = h["selection"]["shard"]
    same = {**h, "selection": {**h["selection"], "shard": first["selection"]["shard"]}}
    if same != first or mine.split("/")[1] != shards[0].split("/")[1] or mine in shards:
        raise CertificateError(f"{where}: a second header that is not another shard of the same run")
    return h


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a complete file (see :func:`read_sections`)."""
    return [r for _, recs in read_sections(path) for r in recs]


def resume_records(
    partial: str | os.PathLike, header: Mapping[str, Any], inputs: Mapping[int, tuple[str, int]]
) -> list[dict[str, Any]]:
    """Valid records of an interrupted run's ``OUT.partial`` (empty list if there is none).

    ``header``: this run's header; the partial file's header line must equal it (a torn header,
    i.e. no complete first line, counts as no file). ``inputs``: index -> (input_sha256, label) of
    the selected samples; a record for any other index, or with another hash/label, is refused.
    Only a torn last line (no trailing newline, or unparsable) is dropped silently.
    """
    p = Path(partial)
    if not p.exists():
        return []
    lines = p.read_bytes().split(b"\n")
    tail = lines.pop()  # text after the last newline: empty or a torn line
    if not lines:
        return []
    try:
        got = _decode_header(lines[0].decode("utf-8"), f"{p}:1")
    except (CertificateError, UnicodeDecodeError):
        raise CertificateError(f"{p}:1: corrupt header in an interrupted run; delete {p}") from None
    if got != parse_header(dict(header)):
        raise CertificateError(f"{p}: cannot resume: another run's file (header differs); "
                               f"delete {p} or rerun with the same arguments")
    records, seen = [], set()
    for n, bline in enumerate(lines[1:], 2):
        where = f"{p}:{n}"
        try:
            rec = _decode_line(bline.decode("utf-8"), where)
        except (CertificateError, UnicodeDecodeError):
            if n == len(lines) and not tail:
                break  # torn last line that happened to end in a newline byte: drop
            raise CertificateError(f"{where}: corrupt record in an interrupted run; delete {p}")
        _check_belongs(rec, got, inputs, where, p)
        if rec["index"] in seen:
            raise CertificateError(f"{where}: duplicate index {rec['index']}; delete {p}")
        seen.add(rec["index"])
        records.append(rec)
    return records


def _check_belongs(rec, header, inputs, where, p) -> None:
    why = disagreement(rec, header)
    if why:
        raise CertificateError(f"{where}: cannot resume: {why}; delete {p} or rerun with the same arguments")
    want = inputs.get(rec["index"])
    if want is None:
        raise CertificateError(f"{where}: cannot resume: index {rec['index']} is not selected")
    if (rec["input_sha256"], rec["label"]) != want:
        raise CertificateError(f"{where}: cannot resume: sample {rec['index']} differs from the data")


class CertWriter:
    """Append records to ``OUT.partial`` batch by batch; :meth:`finish` renames it to ``OUT``.

    The file starts with the run's ``header`` line. ``keep``: records already in the partial file
    to keep (from :func:`resume_records`); the file is rewritten with the header and exactly them
    first (temp file + rename), which also drops a torn line.
    """

    def __init__(self, out: str | os.PathLike, header: Mapping[str, Any], keep: Iterable[Mapping[str, Any]] = ()):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        from common.outputs import atomic_file

        with atomic_file(self.partial) as f:  # a failure leaves no temp file and the old partial
            f.write(header_line(header))
            for rec in keep:
                f.write(record_to_line(rec))
        self._f = open(self.partial, "a", encoding="utf-8")

    def write_batch(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records and make them durable (flush + fsync) before returning."""
        lines = "".join(record_to_line(r) for r in records)
        self._f.write(lines)
        self._f.flush()
        os.fsync(self._f.fileno())

    def finish(self) -> Path:
        """Close and atomically rename ``OUT.partial`` to ``OUT``; returns ``OUT``."""
        self._f.close()
        os.replace(self.partial, self.out)
        return self.out

    def close(self) -> None:
        """Close without renaming (the partial file stays for a later resume)."""
        if not self._f.closed:
            self._f.close()
