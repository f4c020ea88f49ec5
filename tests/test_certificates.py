"""verify.certify.certificates: record validation, float round-trip, atomic writer, resume rules."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from verify.certify.certificates import (
    CertWriter, header_line, input_sha256, parse_record, read_records, read_sections, record_to_line, resume_records,
)
from common.errors import CertificateError
from verify.certify.header import make_header

H = "a" * 64


def rec(i, **kw):
    r = {"index": i, "input_sha256": H, "label": 1, "predicted": 1, "eps": 0.1, "status": "certified",
         "radius": 0.1 + 1e-17 * i, "margin_lower": 0.2000000000000001, "method": "ibp", "guarantee": "float32",
         "model_sha256": "b" * 64, "tool_version": "0.1.0", "domain": [0.0, 1.0], "shard": "0/1",
         "n_total": 10}
    r.update(kw)
    return r


def header(**kw):
    args = dict(model_sha256="b" * 64, data_sha256="e" * 64, n_data=10, eps=0.1, domain=(0.0, 1.0),
                method="ibp", guarantee="float32", limit=None, shard="0/1", n_total=10, tool_version="0.1.0")
    args.update(kw)
    return make_header(**args)


HEADER = header()


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
    w = CertWriter(out, HEADER)
    w.write_batch([rec(0), rec(1)])
    assert not out.exists() and (tmp_path / "c.jsonl.partial").exists()
    w.write_batch([rec(2)])
    w.finish()
    assert out.exists() and not (tmp_path / "c.jsonl.partial").exists()
    assert [r["index"] for r in read_records(out)] == [0, 1, 2]
    assert read_sections(out)[0][0] == HEADER


def test_read_rejects_duplicates_and_garbage(tmp_path):
    p = tmp_path / "c.jsonl"
    h = header_line(HEADER)
    p.write_text(h + record_to_line(rec(0)) + record_to_line(rec(0)))
    with pytest.raises(CertificateError, match="duplicate"):
        read_records(p)
    p.write_text(h + record_to_line(rec(0)) + "{not json\n")
    with pytest.raises(CertificateError, match=":3: not valid JSON"):
        read_records(p)
    with pytest.raises(CertificateError, match="not found"):
        read_records(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("text", ["", "\n", record_to_line(rec(0)), "{}\n"])
def test_read_requires_the_header(tmp_path, text):
    p = tmp_path / "c.jsonl"
    p.write_text(text)
    with pytest.raises(CertificateError, match="header"):
        read_records(p)


@pytest.mark.parametrize("change", [{"eps": 0.05}, {"domain": [0.0, 0.5]}, {"shard": "0/2"}, {"n_total": 9},
                                    {"model_sha256": "c" * 64}, {"method": "lipschitz"},
                                    {"status": "falsified"}])
def test_read_refuses_records_that_disagree_with_the_header(tmp_path, change):
    p = tmp_path / "c.jsonl"
    p.write_text(header_line(HEADER) + record_to_line(rec(0)) + record_to_line(rec(1, **change)))
    with pytest.raises(CertificateError, match="disagrees with the header"):
        read_records(p)


INPUTS = {i: (H, 1) for i in range(10)}


def test_resume_drops_torn_last_line(tmp_path):
    part = tmp_path / "c.jsonl.partial"
    full = header_line(HEADER) + record_to_line(rec(0)) + record_to_line(rec(1))
    part.write_text(full + record_to_line(rec(2))[:40])
    got = resume_records(part, HEADER, INPUTS)
    assert [r["index"] for r in got] == [0, 1]
    assert resume_records(tmp_path / "none.partial", HEADER, INPUTS) == []
    part.write_text(header_line(HEADER)[:30])  # torn header: nothing to keep
    assert resume_records(part, HEADER, INPUTS) == []


def test_resume_refuses_other_run_or_corruption(tmp_path):
    part = tmp_path / "c.jsonl.partial"
    part.write_text(header_line(HEADER) + record_to_line(rec(0)))
    with pytest.raises(CertificateError, match="header differs"):
        resume_records(part, header(eps=0.2), INPUTS)
    with pytest.raises(CertificateError, match="header differs"):
        resume_records(part, header(model_sha256="c" * 64), INPUTS)
    with pytest.raises(CertificateError, match="differs from the data"):
        resume_records(part, HEADER, {0: ("d" * 64, 1)})
    part.write_text(header_line(HEADER) + "garbage\n" + record_to_line(rec(1)))
    with pytest.raises(CertificateError, match="corrupt"):
        resume_records(part, HEADER, INPUTS)
    part.write_text(header_line(HEADER) + record_to_line(rec(1)) + record_to_line(rec(1)))
    with pytest.raises(CertificateError, match="duplicate"):
        resume_records(part, HEADER, INPUTS)
    part.write_text(header_line(HEADER) + record_to_line(rec(1, eps=0.2)))
    with pytest.raises(CertificateError, match="eps"):
        resume_records(part, HEADER, INPUTS)


def test_concatenated_shards_of_one_run(tmp_path):
    p = tmp_path / "c.jsonl"
    h0, h1 = header(shard="0/2"), header(shard="1/2")
    p.write_text(header_line(h0) + record_to_line(rec(0, shard="0/2")) + header_line(h1)
                 + record_to_line(rec(1, shard="1/2")))
    assert [h["selection"]["shard"] for h, _ in read_sections(p)] == ["0/2", "1/2"]
    for bad in (header(shard="0/2"), header(shard="1/3"), header(shard="1/2", eps=0.2)):
        p.write_text(header_line(h0) + record_to_line(rec(0, shard="0/2")) + header_line(bad))
        with pytest.raises(CertificateError, match="second header"):
            read_sections(p)
    p.write_text(header_line(h0) + header_line(h1) + record_to_line(rec(1, shard="0/2")))
    with pytest.raises(CertificateError, match="disagrees with the header"):
        read_sections(p)
