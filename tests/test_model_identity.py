"""Root cause 8 (issue 12): one definition of a model's identity, used by every command.

A model whose weights live in external data (what torch's dynamo exporter writes) must certify and
check end to end, and a change of the external data file must be detected by ``check``."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from certify_helpers import build_model, mixed_head_net, ort_logits, random_linf_net
from certify_helpers import one_torch_thread  # noqa: F401  (module fixture, used through pytestmark)
from verify.certify.run import run_certify
from verify.certify.check import run_check
from common.errors import CertificateError, ModelError
from verify.front import loader
from verify.front.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _external(tmp_path, layers, name):
    plain = build_model(layers, [6], tmp_path / f"{name}_plain.onnx")
    m = onnx.load(str(plain))
    path = tmp_path / f"{name}.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{name}.onnx.data", size_threshold=0)
    assert (tmp_path / f"{name}.onnx.data").stat().st_size > 0
    return path


@pytest.mark.parametrize("kind", ["head", "chain"])
def test_external_data_model_certifies_and_checks(tmp_path, kind):
    rng = np.random.default_rng(4)
    layers = mixed_head_net(rng) if kind == "head" else random_linf_net(rng, [6, 10, 4])
    path = _external(tmp_path, layers, kind)
    x = rng.random((12, 6)).astype(np.float32)
    y = np.argmax(ort_logits(path, x), axis=1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    out = tmp_path / "c.jsonl"
    s = run_certify(path, tmp_path / "d.npz", eps=0.02, out=out)
    ident = loader.model_identity(path)
    assert s["model_sha256"] == ident == load_model(path).sha256
    assert run_check(out, path, tmp_path / "d.npz")["ok"]
    # the identity covers the external weights: change one byte of the data file
    data = tmp_path / f"{kind}.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[0] ^= 1
    data.write_bytes(bytes(raw))
    assert loader.model_identity(path) != ident
    with pytest.raises(CertificateError, match="model_sha256"):
        run_check(out, path, tmp_path / "d.npz")


def test_attack_uses_the_same_identity(tmp_path):
    from verify.attack.torch_graph import TorchGraph

    rng = np.random.default_rng(5)
    path = _external(tmp_path, random_linf_net(rng, [6, 8, 3]), "a")
    assert TorchGraph.from_onnx(path).sha256 == loader.model_identity(path)
    plain = tmp_path / "a_plain.onnx"
    assert TorchGraph.from_onnx(plain).sha256 == loader.model_identity(plain) == load_model(plain).sha256


def test_identity_refuses_external_data_outside_the_folder(tmp_path):
    rng = np.random.default_rng(6)
    path = _external(tmp_path, random_linf_net(rng, [6, 8, 3]), "o")
    m = onnx.load(str(path), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = "../o.onnx.data"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(ModelError, match="outside"):
        loader.model_identity(path)
