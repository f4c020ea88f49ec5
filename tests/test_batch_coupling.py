"""Per-sample semantics (verify/front/batch_axis.py): graphs in which one sample's output depends on the
other rows of its batch (or on its position in the batch, or on the batch size) are refused at load
time; ordinary per-sample graphs, including torch's flatten/reshape idioms, still load.

Each coupled model comes with a witness run in onnxruntime: one sample s, placed in two batches,
gets two different outputs. A certificate about s computed on one batch would then say nothing
about s in another (or alone, or next to the padding rows of a fixed-batch model)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from onnx_helpers import make_model, save
from common.errors import ModelError
from verify.front.model import load_model
from common.runtime import ort_session

N = h.make_node
I64 = np.int64
BIG = np.iinfo(np.int64).max
rng0 = np.random.default_rng(5)
W44 = rng0.normal(size=(4, 4)).astype(np.float32)


def _fix_batch(m, b):
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = b
    return m


def _model(tmp_path, nodes, inits=None, in_shape=(4,), k=4, batch=None, name="m.onnx"):
    m = make_model(nodes, dict(inits or {}), list(in_shape), k)
    return save(m if batch is None else _fix_batch(m, batch), tmp_path, name)


def _run(path, x):
    s = ort_session(path)
    return s.run(None, {s.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


def _shape_n(src="input"):
    """torch's x.size(0) as a 1-element int64 tensor: Shape -> Gather(0) -> Unsqueeze(0)."""
    return [N("Shape", [src], ["shp"]), N("Gather", ["shp", "zero"], ["n0"], axis=0),
            N("Unsqueeze", ["n0", "ax0"], ["n1"])], {"zero": np.array(0, I64), "ax0": np.array([0], I64)}


# name: (nodes, initialisers, input shape, fixed batch or None, expected words in the refusal)
COUPLED = {
    "softmax_axis0": ([N("Softmax", ["input"], ["logits"], axis=0)], {}, (4,), None, "Softmax"),
    "reducemax_axis0": ([N("ReduceMax", ["input", "ax0"], ["mx"], keepdims=1), N("Add", ["input", "mx"], ["logits"])],
                        {"ax0": np.array([0], I64)}, (4,), None, "ReduceMax"),
    "reducemax_all_keepdims": ([N("ReduceMax", ["input"], ["mx"], keepdims=1), N("Sub", ["input", "mx"], ["logits"])],
                               {}, (4,), None, "ReduceMax"),
    "gather_axis0": ([N("Gather", ["input", "i0"], ["g"], axis=0), N("Add", ["input", "g"], ["logits"])],
                     {"i0": np.array([0], I64)}, (4,), None, "Gather"),
    "concat_axis0": ([N("Concat", ["input", "input"], ["c"], axis=0), N("Reshape", ["c", "t"], ["logits"])],
                     {"t": np.array([-1, 8], I64)}, (4,), None, "Concat"),
    "slice_reverse_batch": ([N("Slice", ["input", "s", "e", "a", "st"], ["logits"])],
                            {"s": np.array([-1], I64), "e": np.array([-BIG], I64), "a": np.array([0], I64),
                             "st": np.array([-1], I64)}, (4,), None, "Slice"),
    "pad_then_slice_shifts_rows": ([N("Pad", ["input", "p"], ["pd"]), N("Slice", ["pd", "s", "e", "a"], ["logits"])],
                                   {"p": np.array([1, 0, 0, 0], I64), "s": np.array([0], I64),
                                    "e": np.array([-1], I64), "a": np.array([0], I64)}, (4,), None, "Pad"),
    "transpose_then_softmax_over_batch": ([N("Transpose", ["input"], ["t"], perm=[1, 0]),
                                           N("Softmax", ["t"], ["s"], axis=-1),
                                           N("Transpose", ["s"], ["logits"], perm=[1, 0])], {}, (4,), None, "Softmax"),
    "reshape_to_one_row": ([N("Reshape", ["input", "t1"], ["r"]), N("Softmax", ["r"], ["s"], axis=1),
                            N("Reshape", ["s", "t2"], ["logits"])],
                           {"t1": np.array([1, -1], I64), "t2": np.array([-1, 4], I64)}, (4,), None, "Reshape"),
    "reshape_fixed_batch_interleaves": ([N("Reshape", ["input", "t1"], ["r"]), N("Transpose", ["r"], ["logits"], perm=[1, 0])],
                                        {"t1": np.array([4, 2], I64)}, (4,), 2, "Reshape"),
    "flatten_axis0": ([N("Flatten", ["input"], ["f"], axis=0), N("Softmax", ["f"], ["s"], axis=1),
                       N("Reshape", ["s", "t"], ["logits"])], {"t": np.array([-1, 4], I64)}, (4,), None, "Flatten"),
    "matmul_const_left_mixes_rows": ([N("MatMul", ["A", "input"], ["logits"])],
                                     {"A": np.array([[1, 2], [3, -1]], np.float32)}, (4,), 2, "MatMul"),
    "gemm_transA_contracts_batch": ([N("Gemm", ["input", "W"], ["logits"], transA=1)], {"W": W44}, (4,), 4, "Gemm"),
    "gemm_C_per_row": ([N("Gemm", ["input", "W", "C"], ["logits"])],
                       {"W": W44, "C": np.array([[0, 9, 0, 0], [9, 0, 0, 0]], np.float32)}, (4,), 2, "Gemm"),
    "add_const_per_row": ([N("Add", ["input", "C"], ["logits"])],
                          {"C": np.array([[0, 9, 0, 0], [9, 0, 0, 0]], np.float32)}, (4,), 2, "Add"),
    "concat_const_per_row": ([N("Concat", ["input", "C"], ["logits"], axis=1)],
                             {"C": np.array([[0], [9]], np.float32)}, (4,), 2, "Concat"),
    "matmul_stacked_B_per_row": ([N("Unsqueeze", ["input", "ax1"], ["u"]), N("MatMul", ["u", "B"], ["mm"]),
                                  N("Reshape", ["mm", "t"], ["logits"])],
                                 {"ax1": np.array([1], I64), "B": np.stack([W44, -W44]), "t": np.array([0, -1], I64)},
                                 (4,), 2, "MatMul"),
    "batch_size_in_arithmetic": (_shape_n()[0] + [N("Cast", ["n1"], ["nf"], to=T.FLOAT), N("Mul", ["input", "nf"], ["logits"])],
                                 _shape_n()[1], (4,), None, "Mul"),
    "reshape_target_from_batch_size": (_shape_n()[0] + [N("Concat", ["m1", "n1"], ["t"], axis=0),
                                                        N("Reshape", ["input", "t"], ["r"]),
                                                        N("Transpose", ["r"], ["logits"], perm=[1, 0])],
                                       {**_shape_n()[1], "m1": np.array([-1], I64)}, (8,), None, "Reshape"),
}


def _witness(name, path, batch):
    """Two batches holding the same sample s (row 0 of the first) with different outputs for s in
    onnxruntime: s next to a companion vs s alone (or next to a copy of itself, as the padding of a
    fixed-batch chunk), or s moved to another row."""
    shape = list(COUPLED[name][2])
    rng = np.random.default_rng(3)
    s = rng.normal(size=shape).astype(np.float32) * 3
    t = rng.normal(size=shape).astype(np.float32) * 3 + 10  # larger values: moves maxima over the batch
    b = batch or 2
    with_t = np.stack([s, t] + [t] * (b - 2))
    alone = np.stack([s] * b) if batch else s[None]
    moved = np.stack([t, s] + [t] * (b - 2))
    y_t, y_alone, y_moved = _run(path, with_t), _run(path, alone), _run(path, moved)
    return not (np.array_equal(y_t[0], y_alone[0]) and np.array_equal(y_t[0], y_moved[1]))


@pytest.mark.parametrize("name", sorted(COUPLED))
def test_batch_coupled_graph_is_refused(name, tmp_path):
    nodes, inits, in_shape, batch, word = COUPLED[name]
    out_k = {"concat_axis0": 8, "concat_const_per_row": 5, "reshape_target_from_batch_size": 8}.get(name, 4)
    p = _model(tmp_path, nodes, inits, in_shape, out_k, batch)
    assert _witness(name, p, batch), "the adversarial model must really couple the batch in onnxruntime"
    with pytest.raises(ModelError, match=rf"\({word}.*\) mixes rows of the batch: only per-sample graphs") as e:
        load_model(p)
    assert "\n" not in str(e.value)


def test_softmax_axis0_head_certified_only_with_companions(tmp_path):
    """A Softmax(axis=0) head: next to a companion, sample s has a clear winner (before the fix it
    was certified at eps 0.01); alone it is a tie in onnxruntime, robust at no radius."""
    p = _model(tmp_path, [N("Softmax", ["input"], ["logits"], axis=0)], {}, (2,), 2, batch=2)
    s, t = np.array([0.0, 1.0], np.float32), np.array([1.0, 0.0], np.float32)
    assert np.argmax(_run(p, np.stack([s, t]))[0]) == 1 and np.ptp(_run(p, np.stack([s, t]))[0]) > 0.4
    alone = _run(p, np.stack([s, s]))[0]  # what the padding of a lone sample feeds the model
    assert alone[0] == alone[1]
    with pytest.raises(ModelError, match="Softmax"):
        load_model(p)


def test_fixed_batch_one_is_always_per_sample(tmp_path):
    """With a fixed batch of 1 each run holds one sample: even Softmax(axis=0) is per-sample there."""
    p = _model(tmp_path, [N("Relu", ["input"], ["r"]), N("Softmax", ["r"], ["logits"], axis=0)], {}, (4,), 4, batch=1)
    m = load_model(p)
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    assert np.array_equal(m.forward(x), np.ones((3, 4), np.float32))


# ------------------------------------------------------------------ per-sample graphs still load

def _cnn():
    w = rng0.normal(size=(3, 1, 3, 3)).astype(np.float32)
    nodes = [N("Conv", ["input", "W", "B"], ["c"], pads=[1, 1, 1, 1]), N("Relu", ["c"], ["r"]),
             N("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             N("Transpose", ["mp"], ["nhwc"], perm=[0, 2, 3, 1]), N("Reshape", ["nhwc", "t"], ["f"]),
             N("Gemm", ["f", "Wd", "bd"], ["logits"], transB=1)]
    inits = {"W": w, "B": np.zeros(3, np.float32), "t": np.array([0, -1], I64),
             "Wd": rng0.normal(size=(4, 12)).astype(np.float32), "bd": np.zeros(4, np.float32)}
    return nodes, inits, (1, 4, 4)


def _torch_flatten_idiom():
    """x.view(x.size(0), -1) as the TorchScript exporter writes it, then Reshape [-1, k] and [0, -1]."""
    nodes, inits = _shape_n()
    nodes = nodes + [N("Concat", ["n1", "m1"], ["t"], axis=0), N("Reshape", ["input", "t"], ["f"]),
                     N("Reshape", ["f", "t2"], ["f2"]), N("Reshape", ["f2", "t3"], ["f3"]),
                     N("MatMul", ["f3", "W"], ["logits"])]
    inits = {**inits, "m1": np.array([-1], I64), "t2": np.array([-1, 8], I64), "t3": np.array([0, -1], I64),
             "W": rng0.normal(size=(8, 4)).astype(np.float32)}
    return nodes, inits, (2, 2, 2)


def _dims_after_batch():
    """Shape(x)[1:] (dims that do not involve N) feeding a Reshape, a softmax over classes, a
    ReduceMax over a feature axis and a MatMul whose batch axis is a stacking axis of B."""
    nodes = [N("Shape", ["input"], ["s1"], start=1), N("Concat", ["m1", "s1"], ["t"], axis=0),
             N("Reshape", ["input", "t"], ["r"]), N("ReduceMax", ["r", "a2"], ["mx"], keepdims=0),
             N("Transpose", ["mx"], ["mt"], perm=[1, 0, 2]), N("Transpose", ["mt"], ["m2"], perm=[1, 0, 2]),
             N("MatMul", ["A", "m2"], ["mm"]), N("Flatten", ["mm"], ["f"]),
             N("Softmax", ["f"], ["logits"], axis=-1)]
    inits = {"m1": np.array([-1], I64), "a2": np.array([2], I64), "A": rng0.normal(size=(2, 3)).astype(np.float32)}
    return nodes, inits, (3, 2, 2)


def _shape_of_shape():
    """Shape(Shape(x)) (the rank, free of N) + 1 as the row size after Shape(x)[0]: [N, 4]."""
    nodes, inits = _shape_n()
    nodes = nodes + [N("Shape", ["shp"], ["rank"]), N("Add", ["rank", "one"], ["row"]),
                     N("Concat", ["n1", "row"], ["t"], axis=0), N("Reshape", ["input", "t"], ["logits"])]
    return nodes, {**inits, "one": np.array([1], I64)}, (2, 2)


PER_SAMPLE = {
    "shape_of_shape": _shape_of_shape(),
    "dynamo_flatten_idiom": ([N("Shape", ["input"], ["n1"], start=0, end=1), N("Concat", ["n1", "m1"], ["t"], axis=0),
                              N("Reshape", ["input", "t"], ["logits"])], {"m1": np.array([-1], I64)}, (2, 2)),
    "mlp": ([N("Gemm", ["input", "W1", "b1"], ["h"], transB=1), N("Relu", ["h"], ["r"]),
             N("Gemm", ["r", "W2", "b2"], ["logits"], transB=1)],
            {"W1": W44, "b1": np.ones(4, np.float32), "W2": -W44, "b2": np.zeros((1, 4), np.float32)}, (4,)),
    "linf_dist": ([N("LinfDist", ["input", "W", "B"], ["d"], domain="linf"), N("Neg", ["d"], ["logits"])],
                  {"W": W44, "B": np.zeros(4, np.float32)}, (4,)),
    "linf_standard_ops": ([N("Unsqueeze", ["input", "a1"], ["u"]), N("Sub", ["u", "W"], ["s"]), N("Abs", ["s"], ["a"]),
                           N("ReduceMax", ["a", "a2"], ["logits"], keepdims=0)],
                          {"a1": np.array([1], I64), "a2": np.array([2], I64), "W": W44}, (4,)),
    "cnn": _cnn(),
    "torch_flatten_idiom": _torch_flatten_idiom(),
    "dims_after_batch": _dims_after_batch(),
    "softmax_classes_row_const": ([N("Add", ["input", "C"], ["a"]), N("Softmax", ["a"], ["logits"], axis=1)],
                                  {"C": np.arange(4, dtype=np.float32)[None]}, (4,)),
}


@pytest.mark.parametrize("batch", [None, 3])
@pytest.mark.parametrize("name", sorted(PER_SAMPLE))
def test_per_sample_graph_loads(name, batch, tmp_path):
    nodes, inits, in_shape = PER_SAMPLE[name]
    m = make_model(nodes, dict(inits), list(in_shape), 4, linf_ops=["LinfDist"] if name == "linf_dist" else ())
    p = save(m if batch is None else _fix_batch(m, batch), tmp_path)
    vm = load_model(p)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, *in_shape)).astype(np.float32)
    y = _run(p, x)
    x2 = x.copy()
    x2[1:] = rng.normal(size=x2[1:].shape)
    assert np.array_equal(_run(p, x2)[0], y[0])  # the graph really is per-sample
    np.testing.assert_allclose(vm.forward(x), y, rtol=1e-5, atol=1e-5)


def test_torch_exported_reshapes_load(tmp_path):
    torch = pytest.importorskip("torch")
    import warnings

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.l = torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Linear(32, 4)

        def forward(self, x):
            x = torch.relu(self.c(x))
            a = x.view(x.size(0), -1)
            b = x.reshape(-1, 32)
            c = x.flatten(1)
            return self.l(a + b - c) + self.l(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))

    torch.manual_seed(0)
    p = tmp_path / "t.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(Net().eval(), (torch.rand(2, 1, 4, 4),), str(p), input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                              dynamo=False, opset_version=17)
        except Exception as e:  # pragma: no cover - exporter availability
            pytest.skip(f"torch TorchScript exporter unavailable: {e}")
    m = load_model(p)
    x = np.random.default_rng(0).random((3, 1, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(m.forward(x), _run(p, x), rtol=1e-5, atol=1e-5)
