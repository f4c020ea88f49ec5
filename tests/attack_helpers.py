"""Small ONNX model builders shared by the attack / alarm / audit tests (owned by the attack tests).

Built with onnx.helper only (no nets/ or export/), so these tests stand alone:
- ``relu_mlp_onnx``: an ordinary Flatten–Gemm–Relu–…–Gemm classifier (standard ops);
- ``linf_net_onnx``: a pure ℓ∞-dist net using linf::LinfDist with the canonical function bodies
  from common.linf_spec (so plain onnxruntime runs it), logits = Neg(last layer);
- ``train_relu_mlp``: a few epochs of Adam on (x, y), returning the weight list.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

OPSET = 18


def _save(graph, path, functions=(), metadata=None, domains=()):
    opsets = [h.make_opsetid("", OPSET)] + [h.make_opsetid(d, 1) for d in domains]
    model = h.make_model(graph, opset_imports=opsets, functions=list(functions))
    model.ir_version = 9
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def relu_mlp_onnx(path, weights, input_shape, metadata=None, batch="N"):
    """weights: [(W [out, in], b [out]), ...]; Relu between layers, none after the last.
    ``batch``: the batch dimension ("N" dynamic, or a fixed size such as 1)."""
    nodes = [h.make_node("Flatten", ["input"], ["h0"], axis=1)]
    inits = []
    cur = "h0"
    for i, (w, b) in enumerate(weights):
        inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"W{i}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"B{i}")]
        out = "logits" if i == len(weights) - 1 else f"g{i}"
        nodes.append(h.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], transB=1))
        if i < len(weights) - 1:
            nodes.append(h.make_node("Relu", [out], [f"r{i}"]))
            cur = f"r{i}"
    k = np.asarray(weights[-1][0]).shape[0]
    graph = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("input", T.FLOAT, [batch, *input_shape])],
                         [h.make_tensor_value_info("logits", T.FLOAT, [batch, k])], inits)
    return _save(graph, path, metadata=metadata)


def linf_net_onnx(path, weights, bias, input_shape, metadata=None):
    """Pure ℓ∞-dist net: weights [W0 [M0, D], W1 [M1, M0], ...], bias of the last layer; logits = −y."""
    from common.linf_spec import make_linf_functions

    nodes = [h.make_node("Flatten", ["input"], ["h0"], axis=1)]
    inits = []
    cur = "h0"
    for i, w in enumerate(weights):
        inits.append(numpy_helper.from_array(np.asarray(w, np.float32), f"W{i}"))
        ins = [cur, f"W{i}"]
        if i == len(weights) - 1:
            inits.append(numpy_helper.from_array(np.asarray(bias, np.float32), "B"))
            ins.append("B")
        nodes.append(h.make_node("LinfDist", ins, [f"d{i}"], domain="linf"))
        cur = f"d{i}"
    nodes.append(h.make_node("Neg", [cur], ["logits"]))
    k = np.asarray(weights[-1]).shape[0]
    graph = h.make_graph(nodes, "linfnet", [h.make_tensor_value_info("input", T.FLOAT, ["N", *input_shape])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["N", k])], inits)
    return _save(graph, path, functions=make_linf_functions(OPSET, ("LinfDist",)), metadata=metadata,
                 domains=("linf",))


def train_relu_mlp(x, y, hidden=(64,), epochs=30, lr=1e-2, seed=0, batch=64):
    """Plain (undefended) ReLU MLP, Adam; returns [(W, b), ...] as numpy float32 (1 torch thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(x, y, hidden, epochs, lr, seed, batch)
    finally:
        torch.set_num_threads(threads)


def _train(x, y, hidden, epochs, lr, seed, batch):
    torch.manual_seed(seed)
    d = int(np.prod(x.shape[1:]))
    sizes = [d, *hidden, int(y.max()) + 1]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(torch.nn.Flatten(), *layers[:-1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    lins = [m for m in net if isinstance(m, torch.nn.Linear)]
    return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in lins]
