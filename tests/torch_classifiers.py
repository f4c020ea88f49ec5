"""The classifier families users train, in plain torch, small (tests/test_export_classifiers.py and
docs/OPS.md "What the torch exporters emit"): an MLP, a CNN (Conv-BatchNorm-ReLU-MaxPool-
AdaptiveAvgPool-Linear), a ResNet (BasicBlocks, residual Add, AdaptiveAvgPool) and a ViT block
(patch Conv, LayerNorm, multi-head self-attention, GELU MLP, class token or mean pooling); and
their export with either torch exporter."""

from __future__ import annotations

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.f(x), 1))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.sc = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + self.sc(x))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.l1, self.l2 = Block(8, 8, 1), Block(8, 16, 2)
        self.pool, self.fc = nn.AdaptiveAvgPool2d((1, 1)), nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.l2(self.l1(self.stem(x)))), 1))


class ViT(nn.Module):
    def __init__(self, cls=True, dim=16, heads=2):
        super().__init__()
        self.cls_tok = cls
        self.patch = nn.Conv2d(3, dim, 2, 2)
        if cls:
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos = nn.Parameter(torch.randn(1, 16 + int(cls), dim) * 0.1)
        self.ln1, self.attn = nn.LayerNorm(dim), nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, dim))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        if self.cls_tok:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        x = x + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = self.ln(x + self.mlp(self.ln2(x)))
        return self.head(x[:, 0] if self.cls_tok else x.mean(1))


FAMILIES = {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "vit_cls": lambda: ViT(True), "vit_mean": lambda: ViT(False)}
IN_SHAPE = {"mlp": (3, 4, 4)}  # the others take 3 x 8 x 8


def in_shape(family: str) -> tuple[int, ...]:
    return IN_SHAPE.get(family, (3, 8, 8))


def export(family: str, path, dynamo: bool, dynamic_batch: bool = True, seed: int = 0):
    """Export a freshly initialised (eval mode) ``family`` net to ``path``; BatchNorm statistics are
    randomised so the folded affine maps are not the identity."""
    torch.manual_seed(seed)
    m = FAMILIES[family]().eval()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x = torch.rand(2 if dynamic_batch else 1, *in_shape(family))
    kw = dict(dynamo=dynamo, input_names=["x"], output_names=["y"])
    if dynamic_batch and dynamo:
        kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
    elif dynamic_batch:
        kw["dynamic_axes"] = {"x": {0: "N"}, "y": {0: "N"}}
    torch.onnx.export(m, (x,), str(path), **kw)
    return m
