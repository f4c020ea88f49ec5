"""verify.certificates: record validation, float round-trip, atomic writer, resume rules."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from verify.certificates import (
    CertWriter, input_sha256, parse_record, read_records, record_to_line, resume_records,
)
from verify.errors import CertificateError

H = "a" * 64


def rec(i, **kw):
    r = {"index": i, "input_sha256": H, "label": 1, "predicted": 1, "eps": 0.1, "status": "certified",
         "radius": 0.1 + 1e-17 * i, "margin_lower": 0.2000000000000001, "method": "ibp",
         "model_sha256": "b" * 64, "tool_version": "0.1.0", "domain": [0.0, 1.0], "shard": "0/1",
         "n_total": 10}
    r.update(kw)
    return r


def test_input_hash_is_sha256_of_float32_c_bytes():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert input_sha256(x) == hashlib.sha256(x.tobytes()).hexdigest()
    assert input_sha256(np.asfortranarray(x)) == input_sha256(x)
    with pytest.raises(CertificateError):
        input_sha256(x.astype(np.float64))


def test_floats_round_trip_exactly():
    r = rec(0, radius=0.1 + 0.2, margin_lower=np.nextafter(1.0, 2.0), eps=1 / 3)
    back = json.loads(record_to_line(r))
    assert back["radius"] == 0.1 + 0.2 and back["eps"] == 1 / 3
    assert back["margin_lower"] == np.nextafter(1.0, 2.0)


def test_non_finite_margin_written_as_null():
    line = record_to_line(rec(0, status="unknown", margin_lower=float("nan")))
    assert json.loads(line)["margin_lower"] is None and "NaN" not in line


@pytest.mark.parametrize("change,msg", [
    ({"status": "proven"}, "unknown status"),
    ({"radius": -1.0}, "radius"),
    ({"eps": float("inf")}, "eps"),
    ({"index": True}, "index"),
    ({"input_sha256": "xyz"}, "input_sha256"),
    ({"status": "misclassified", "radius": 0.5}, "radius 0"),
    ({"shard": "2/2"}, "shard"),
    ({"domain": [1.0, 0.0]}, "domain"),
])
def test_parse_rejects_bad_fields(change, msg):
    with pytest.raises(CertificateError, match=msg):
        parse_record(rec(0, **change))


def test_parse_rejects_missing_field():
    r = rec(0)
    del r["label"]
    with pytest.raises(CertificateError, match="missing field"):
        parse_record(r)


def test_writer_is_atomic_and_read_back(tmp_path):
    out = tmp_path / "c.jsonl"
    w = CertWriter(out)
    w.write_batch([rec(0), rec(1)])
    assert not out.exists() and (tmp_path / "c.jsonl.partial").exists()
    w.write_batch([rec(2)])
    w.finish()
    assert out.exists() and not (tmp_path / "c.jsonl.partial").exists()
    assert [r["index"] for r in read_records(out)] == [0, 1, 2]


def test_read_rejects_duplicates_and_garbage(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text(record_to_line(rec(0)) + record_to_line(rec(0)))
    with pytest.raises(CertificateError, match="duplicate"):
        read_records(p)
    p.write_text(record_to_line(rec(0)) + "{not json\n")
    with pytest.raises(CertificateError, match=":2: not valid JSON"):
        read_records(p)
    with pytest.raises(CertificateError, match="not found"):
        read_records(tmp_path / "missing.jsonl")


EXPECT = {"model_sha256": "b" * 64, "eps": 0.1, "domain": [0.0, 1.0], "shard": "0/1", "n_total": 10}
INPUTS = {i: (H, 1) for i in range(10)}


def test_resume_drops_torn_last_line(tmp_path):
    part = tmp_path / "c.jsonl.partial"
    full = record_to_line(rec(0)) + record_to_line(rec(1))
    part.write_text(full + record_to_line(rec(2))[:40])
    got = resume_records(part, EXPECT, INPUTS)
    assert [r["index"] for r in got] == [0, 1]
    assert resume_records(tmp_path / "none.partial", EXPECT, INPUTS) == []


def test_resume_refuses_other_run_or_corruption(tmp_path):
    part = tmp_path / "c.jsonl.partial"
    part.write_text(record_to_line(rec(0)))
    with pytest.raises(CertificateError, match="eps"):
        resume_records(part, {**EXPECT, "eps": 0.2}, INPUTS)
    with pytest.raises(CertificateError, match="model_sha256"):
        resume_records(part, {**EXPECT, "model_sha256": "c" * 64}, INPUTS)
    with pytest.raises(CertificateError, match="differs from the data"):
        resume_records(part, EXPECT, {0: ("d" * 64, 1)})
    part.write_text("garbage\n" + record_to_line(rec(1)))
    with pytest.raises(CertificateError, match="corrupt"):
        resume_records(part, EXPECT, INPUTS)
    part.write_text(record_to_line(rec(1)) + record_to_line(rec(1)))
    with pytest.raises(CertificateError, match="duplicate"):
        resume_records(part, EXPECT, INPUTS)
