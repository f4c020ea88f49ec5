"""The registry of ℓ∞-dist architectures: one entry per name, the only place that knows them.

An architecture is a family of `nets.config.ModelConfig`s: whether it has an ℓ∞-dist conv stack,
whether it ends in the MLP head (Linear–Tanh–Linear, trained with the IBP loss) or in a last ℓ∞-dist
layer (pure net, logits = −distance), and the geometry it uses for every `ModelConfig` field left
unset (None). Adding an architecture is one `Arch(...)` line here; nothing else branches on names.

Geometry of the report's ℓ∞-dist LeNet / AlexNet / VGG (seed report 000, built from its
description; conv + mean shift + pooling per stage, then ℓ∞-dist linear layers):
- LeNet: conv(C→6, 5×5, pad 2) + MaxPool 2; conv(6→16, 5×5) + MaxPool 2; ℓ∞-dist fc 400 → 120 →
  1024 (28×28 input) → 10 with bias (pure) or → MLP head 512 → 10 ("LeNet+MLP").
- AlexNet (small-image form): convs 64, 192, 384, 256, 256 (3×3, pad 1), MaxPool 2 after the 1st,
  2nd and 5th; fc 1024 → 1024.
- VGG (VGG-11 layout): convs 64, 128, 256, 256, 512, 512, 512, 512 (3×3, pad 1), MaxPool 2 after
  the 1st, 2nd, 4th and 6th (four pools, so 28×28 MNIST images keep a 1×1 map); fc 512 → 512.
Max and average pooling are 1-Lipschitz in ℓ∞ (each output is a max or a mean of inputs), so these
nets keep the ℓ∞-dist Net's guarantee; the verifier's static analysis proves it on the exported file.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Arch:
    name: str
    help: str
    head: bool = False           # MLP head instead of a last ℓ∞-dist layer
    conv: bool = False           # ℓ∞-dist conv stack (conv_* fields) before the linear layers
    defaults: dict = field(default_factory=dict)  # ModelConfig fields set when left None


BASE_DEFAULTS = dict(depth=5, width=512, hidden=512, widths=(), conv_channels=(96, 96, 192, 192, 192),
                     conv_strides=(1, 1, 2, 1, 1), conv_kernel=3, conv_padding=(), conv_pool=(),
                     pool="max", residual=0.0, mean_shift=True, identity_init=True)
"""Geometry of every architecture unless its entry says otherwise (the pre-registry defaults)."""

_LENET = dict(conv_channels=(6, 16), conv_strides=(1, 1), conv_kernel=5, conv_padding=(2, 0),
              conv_pool=(2, 2), widths=(120, 1024))
_ALEXNET = dict(conv_channels=(64, 192, 384, 256, 256), conv_strides=(1,) * 5, conv_kernel=3,
                conv_padding=(1,) * 5, conv_pool=(2, 2, 0, 0, 2), widths=(1024, 1024))
_VGG = dict(conv_channels=(64, 128, 256, 256, 512, 512, 512, 512), conv_strides=(1,) * 8,
            conv_kernel=3, conv_padding=(1,) * 8, conv_pool=(2, 2, 0, 2, 0, 2, 0, 0), widths=(512, 512))


def _pair(name: str, help_: str, defaults: dict, conv: bool = True) -> list[Arch]:
    """The pure net and its +MLP variant."""
    return [Arch(name, f"{help_}, last layer ℓ∞-dist (pure)", False, conv, defaults),
            Arch(f"{name}-mlp", f"{help_} + MLP head (IBP loss)", True, conv, defaults)]


ARCHS: dict[str, Arch] = {a.name: a for a in [
    Arch("linf", "pure ℓ∞-dist Net: depth × width dist layers, the last one to the classes"),
    Arch("linf-mlp", "ℓ∞-dist Net+MLP: depth × width dist layers + MLP head", head=True),
    Arch("conv-linf-mlp", "paper's conv ℓ∞-dist Net+MLP (convs without pooling)", head=True, conv=True),
    *_pair("lenet", "ℓ∞-dist LeNet (2 conv + max pool, fc 120, 1024)", _LENET),
    *_pair("alexnet", "ℓ∞-dist AlexNet (5 conv, 3 max pools, fc 1024, 1024)", _ALEXNET),
    *_pair("vgg", "ℓ∞-dist VGG-11 (8 conv, 4 max pools, fc 512, 512)", _VGG),
]}


def get_arch(name: str) -> Arch:
    """The registry entry; raises KeyError naming the known architectures."""
    if name not in ARCHS:
        raise KeyError(f"unknown arch {name!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[name]


def arch_default(name: str, key: str):
    """The value architecture `name` gives field `key` when it is left None."""
    return ARCHS[name].defaults.get(key, BASE_DEFAULTS[key])
