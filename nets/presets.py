"""Training configuration (`TrainConfig`) and named presets.

Paper presets reproduce Table 6 of Zhang et al. 2021 and the authors' published command lines
(width 5120; 400 epochs for MNIST/F-MNIST, 800 for CIFAR-10; p = 8 for the first e1 epochs,
8 → 1000 until e3, then ∞; batch 512; Adam lr 0.02; ℓp weight decay 5e-3). They need a GPU.
Small presets run on a laptop CPU: `digits-small` (the offline default of `demo`) and
`mnist-small` (a 256×5 pure ℓ∞-dist net with a compressed schedule, see docs/RESULTS.md).

κ convention: the IBP loss is κ·CE(clean) + (1 − κ)·CE(worst case). The authors' code weights the
worst case by its `--kappa`, so their kappa 0.5 / 0.95 / 1.0 are our κ = 0.5 / 0.05 / 0.0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nets.archs import ARCHS
from common.errors import LinfVerifyError

__all__ = ["ConfigError", "TrainingDiverged", "TrainConfig", "TrainFields", "MODEL_FIELDS", "PRESETS", "PRESET_HELP",
           "get_preset", "apply_overrides", "model_config_for"]


class ConfigError(LinfVerifyError):
    """A preset name or option value is invalid."""


class TrainingDiverged(LinfVerifyError):
    """The loss became NaN or infinite (learning rate too high, or bad data)."""


def _opt(default, help_: str):
    return field(default=default, metadata={"help": help_})


@dataclass
class TrainFields:
    """The training part of `TrainConfig` (the model part comes from nets.config.ModelConfig)."""

    # --- data
    dataset: str = _opt("digits", "mnist | fashion-mnist | cifar10 | digits")
    data_dir: str | None = _opt(None, "folder with the data sets (default ../shared/data if present)")
    holdout: int = _opt(0, "withhold the last N training samples for per-epoch evaluation")
    train_limit: int | None = _opt(None, "train on the first N samples only")
    test_limit: int | None = _opt(None, "evaluate on the first N test samples only")
    eval_limit: int | None = _opt(None, "per-epoch evaluation on the first N samples only")
    augment: bool = _opt(True, "paper augmentation (crop pad 1; CIFAR: pad 4 + flip)")
    # --- objective
    loss: str = _opt("hinge", "hinge (pure nets) | ibp (+MLP) | mixture (v2)")
    relaxation: str = _opt("lp", "how finite p relaxes ℓ∞ while annealing: lp (‖·‖_p) | lse (log-sum-exp)")
    eps_test: float = _opt(0.1, "ε of the reported certified accuracy")
    eps_train: float = _opt(0.15, "ε used by the loss (hinge θ = 2·eps_train)")
    mix: float = _opt(0.75, "hinge: weight of the max term vs the mean term")
    kappa: float = _opt(0.5, "ibp: weight of the clean CE (κ) after the ε warm-up")
    kappa_start: float | None = _opt(None, "ibp: κ at the start of the ε warm-up (default: kappa)")
    lam_start: float = _opt(0.1, "mixture: λ (CE weight) at the start")
    lam_end: float = _opt(1e-3, "mixture: λ at the end (geometric decay)")
    clip: float = _opt(1.0, "mixture: hinge clip value")
    # --- schedule, in epochs (fractions allowed)
    epochs: int = _opt(60, "total epochs (phase lengths scale with it)")
    p_warm_epochs: float = _opt(5.0, "epochs at p = p_start")
    anneal_epochs: float = _opt(40.0, "epochs of geometric p_start → p_end; then p = ∞")
    eps_warm_epochs: float = _opt(0.0, "linear ε_train warm-up from 0 (0: constant)")
    lr_warm_epochs: float | None = _opt(None, "epochs of constant lr before the cosine decay (default: p_warm_epochs)")
    p_start: float = _opt(8.0, "p of the warm-up phase")
    p_end: float = _opt(1000.0, "p at the end of annealing")
    # --- optimiser
    optimizer: str = _opt("adam", "adam | adamw | madam (multiplicative, nets.optim)")
    batch_size: int = _opt(512, "batch size (over all ranks)")
    lr: float = _opt(0.02, "learning rate: constant, then cosine to 0")
    beta1: float = _opt(0.9, "Adam β1")
    beta2: float = _opt(0.99, "Adam β2 (MAdam's β)")
    adam_eps: float = _opt(1e-10, "Adam ε")
    weight_decay: float = _opt(0.0, "ℓp weight decay of dist layers (paper eqn 6), decoupled")
    head_weight_decay: float | None = _opt(None, "ℓ2 decay of the head (default: weight_decay)")
    ema_decay: float = _opt(0.99, "EMA decay τ of weights and buffers (0.99 or 0.999)")
    # --- runtime
    seed: int = _opt(0, "random seed (same seed, same weights)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    backend: str = _opt("auto", "distance op: auto | reference | cpu | cuda")
    threads: int | None = _opt(None, "CPU threads for torch (1 is fastest for small nets on a busy CPU)")
    members: int = _opt(1, "train K members (seeds seed..seed+K-1), save a fusion ensemble")
    joint: bool = _opt(False, "with members > 1: train them jointly (loss on the fused output)")
    eval_batch_size: int = _opt(1000, "batch size of the evaluation")
    notes: dict = field(default_factory=dict, metadata={"help": "free-form notes"})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _model_fields() -> list[dataclasses.Field]:
    from nets.config import ModelConfig

    return [f for f in dataclasses.fields(ModelConfig) if f.name not in ("input_shape", "num_classes", "extra")]


MODEL_FIELDS = tuple(f.name for f in _model_fields())
TrainConfig = dataclasses.make_dataclass(
    "TrainConfig",
    [(f.name, f.type, field(default="linf" if f.name == "arch" else None, metadata=f.metadata))
     for f in _model_fields()],
    bases=(TrainFields,))
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = """Everything a training run needs; JSON-serialisable (saved into the checkpoint).

The model fields (arch, depth, width, ..., residual) are DERIVED from nets.config.ModelConfig's
fields, help texts included; None means "the architecture's default" (nets.archs)."""


def describe_model(cfg: TrainConfig) -> str:
    """One line: arch, hidden ℓ∞-dist widths, conv channels and head (the resolved geometry)."""
    from nets.config import hidden_widths

    m = model_config_for(cfg, (1, 1, 1))
    conv = f" conv {'-'.join(map(str, m.conv_channels))}" if ARCHS[m.arch].conv else ""
    head = f" head {m.hidden}" if ARCHS[m.arch].head else ""
    return f"{m.arch}{conv} fc {'-'.join(map(str, hidden_widths(m))) or '-'}{head}"


def model_config_for(cfg: TrainConfig, input_shape, num_classes: int = 10):
    """The nets.config.ModelConfig that `cfg` describes for data of `input_shape` (C, H, W)."""
    from nets.config import ModelConfig

    return ModelConfig(input_shape=tuple(int(v) for v in input_shape), num_classes=num_classes,
                       **{k: getattr(cfg, k) for k in MODEL_FIELDS})


_PAPER = dict(batch_size=512, lr=0.02, weight_decay=5e-3, p_start=8.0, p_end=1000.0,
              ema_decay=0.999, width=5120)
_LENET_MLP = dict(_PAPER, arch="lenet-mlp", hidden=512, loss="ibp", kappa=0.5, epochs=400,
                  p_warm_epochs=50, anneal_epochs=300, eps_warm_epochs=50, ema_decay=0.999)
_LENET_MLP.pop("width")
_LENET_MLP_CPU = dict(_LENET_MLP, epochs=5, p_warm_epochs=1, anneal_epochs=3, eps_warm_epochs=1,
                      batch_size=64, ema_decay=0.9, weight_decay=0.0, train_limit=1024, test_limit=500,
                      threads=1)  # 80 steps: τ 0.99 would leave 45 % of the EMA on the initial weights
# The compressed CPU schedule of docs/RESULTS.md: all 60,000 images, 5 epochs of batch 128 (2,345 steps;
# p = 8 for 0.5 epoch, 8 → 1000 over 3, then ∞), ~6 min per model on one core of this machine.
_LENET_MLP_CPU60K = dict(_LENET_MLP_CPU, train_limit=None, batch_size=128, p_warm_epochs=0.5,
                         anneal_epochs=3, eps_warm_epochs=0.5, ema_decay=0.99)
PRESETS: dict[str, dict] = {
    # Pure ℓ∞-dist nets, hinge loss (v1). Epoch phases e1 = p_warm, e3 = p_warm + anneal.
    "mnist-linf": dict(_PAPER, dataset="mnist", arch="linf", depth=5, loss="hinge", mix=0.75,
                       eps_test=0.3, eps_train=0.45, epochs=400, p_warm_epochs=50, anneal_epochs=300),
    "fmnist-linf": dict(_PAPER, dataset="fashion-mnist", arch="linf", depth=5, loss="hinge", mix=1.0,
                        eps_test=0.1, eps_train=0.225, epochs=400, p_warm_epochs=50,
                        anneal_epochs=300),
    "cifar10-linf": dict(_PAPER, dataset="cifar10", arch="linf", depth=6, loss="hinge", mix=0.75,
                         eps_test=8 / 255, eps_train=0.1568, epochs=800, p_warm_epochs=100,
                         anneal_epochs=650),
    # ℓ∞-dist Net+MLP, IBP loss through the head; ε warm-up over the p = 8 phase.
    "mnist-linf-mlp": dict(_PAPER, dataset="mnist", arch="linf-mlp", depth=4, hidden=256,
                           loss="ibp", kappa=0.5, eps_test=0.3, eps_train=0.35, epochs=400,
                           p_warm_epochs=50, anneal_epochs=300, eps_warm_epochs=50),
    "fmnist-linf-mlp": dict(_PAPER, dataset="fashion-mnist", arch="linf-mlp", depth=4, hidden=512,
                            loss="ibp", kappa=0.5, eps_test=0.1, eps_train=0.11, epochs=400,
                            p_warm_epochs=50, anneal_epochs=300, eps_warm_epochs=50),
    "cifar10-linf-mlp": dict(_PAPER, dataset="cifar10", arch="linf-mlp", depth=5, hidden=512,
                             loss="ibp", kappa=0.05, eps_test=8 / 255, eps_train=0.03451,
                             epochs=800, p_warm_epochs=100, anneal_epochs=650,
                             eps_warm_epochs=100),
    "cifar10-conv-linf-mlp": dict(_PAPER, dataset="cifar10", arch="conv-linf-mlp", depth=1,
                                  width=1024, hidden=512, conv_channels=(96, 96, 192, 192, 192),
                                  conv_strides=(1, 1, 2, 1, 1), loss="ibp", kappa=0.0,
                                  eps_test=8 / 255, eps_train=0.03451, epochs=800,
                                  p_warm_epochs=100, anneal_epochs=650, eps_warm_epochs=100),
    # Seed report 000 (EMA and ensembles of ℓ∞-dist nets): ℓ∞-dist LeNet+MLP, IBP loss κ 0.5.
    "mnist-lenet-mlp": dict(_LENET_MLP, dataset="mnist", eps_test=0.3, eps_train=0.35),
    "fmnist-lenet-mlp": dict(_LENET_MLP, dataset="fashion-mnist", eps_test=0.1, eps_train=0.11),
    "mnist-lenet-mlp-ens10": dict(_LENET_MLP, dataset="mnist", eps_test=0.3, eps_train=0.35, members=10),
    "fmnist-lenet-mlp-ens10": dict(_LENET_MLP, dataset="fashion-mnist", eps_test=0.1, eps_train=0.11,
                                   members=10),
    # Its compressed CPU form (a tiny run: 1024 training images, 5 epochs; see docs/RESULTS.md).
    "mnist-lenet-mlp-cpu": dict(_LENET_MLP_CPU, dataset="mnist", eps_test=0.3, eps_train=0.35),
    "fmnist-lenet-mlp-cpu": dict(_LENET_MLP_CPU, dataset="fashion-mnist", eps_test=0.1, eps_train=0.11),
    "mnist-lenet-mlp-cpu60k": dict(_LENET_MLP_CPU60K, dataset="mnist", eps_test=0.3, eps_train=0.35),
    "fmnist-lenet-mlp-cpu60k": dict(_LENET_MLP_CPU60K, dataset="fashion-mnist", eps_test=0.1,
                                    eps_train=0.11),
    # CPU presets.
    # digits: no augmentation (a 1-pixel crop of an 8×8 image cost ~10 points clean, ~20 certified,
    # measured: 60 epochs, clean 79.7 / cert 55.3 with crop vs 87.8 / 77.5 without at ε = 0.1).
    "digits-small": dict(dataset="digits", arch="linf", depth=4, width=256, loss="hinge", mix=0.75,
                         eps_test=0.1, eps_train=0.2, batch_size=32, lr=0.02, epochs=50,
                         p_warm_epochs=2, anneal_epochs=38, ema_decay=0.99, weight_decay=0.0,
                         augment=False, threads=1),
    "mnist-small": dict(dataset="mnist", arch="linf", depth=5, width=256, loss="hinge", mix=0.75,
                        eps_test=0.3, eps_train=0.45, batch_size=512, lr=0.02, epochs=45,
                        p_warm_epochs=1, anneal_epochs=31, ema_decay=0.99, weight_decay=0.0),
}

PRESET_HELP = {
    "mnist-linf": "paper: MNIST pure ℓ∞-dist net 5×5120, ε=0.3 (GPU)",
    "fmnist-linf": "paper: Fashion-MNIST pure 5×5120, ε=0.1 (GPU)",
    "cifar10-linf": "paper: CIFAR-10 pure 6×5120, ε=8/255 (GPU)",
    "mnist-linf-mlp": "paper: MNIST ℓ∞-dist Net+MLP 4×5120 + 256 head, ε=0.3 (GPU)",
    "fmnist-linf-mlp": "paper: Fashion-MNIST Net+MLP 4×5120 + 512 head, ε=0.1 (GPU)",
    "cifar10-linf-mlp": "paper: CIFAR-10 Net+MLP 5×5120 + 512 head, ε=8/255 (GPU)",
    "cifar10-conv-linf-mlp": "paper: CIFAR-10 conv ℓ∞-dist Net+MLP, ε=8/255 (GPU)",
    "mnist-lenet-mlp": "report 000: MNIST ℓ∞-dist LeNet+MLP, ε=0.3 (GPU)",
    "fmnist-lenet-mlp": "report 000: Fashion-MNIST ℓ∞-dist LeNet+MLP, ε=0.1 (GPU)",
    "mnist-lenet-mlp-ens10": "report 000: MNIST LeNet+MLP ensemble of 10, ε=0.3 (GPU)",
    "fmnist-lenet-mlp-ens10": "report 000: Fashion-MNIST LeNet+MLP ensemble of 10, ε=0.1 (GPU)",
    "mnist-lenet-mlp-cpu": "CPU tiny: MNIST LeNet+MLP, 1024 images, 5 epochs, ε=0.3 (minutes)",
    "fmnist-lenet-mlp-cpu": "CPU tiny: Fashion-MNIST LeNet+MLP, 1024 images, 5 epochs, ε=0.1 (minutes)",
    "mnist-lenet-mlp-cpu60k": "CPU compressed: MNIST LeNet+MLP, 60k images, 5 epochs, ε=0.3 (~6 min)",
    "fmnist-lenet-mlp-cpu60k": "CPU compressed: Fashion-MNIST LeNet+MLP, 60k images, 5 epochs, ε=0.1 (~6 min)",
    "digits-small": "CPU, offline: 8×8 digits, pure 4×256, ε=0.1 (~1 min)",
    "mnist-small": "CPU: MNIST pure 5×256, ε=0.3, compressed schedule (tens of minutes)",
}


def get_preset(name: str) -> TrainConfig:
    """A fresh TrainConfig for preset `name`; raises ConfigError naming the known presets."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return TrainConfig(**PRESETS[name])


def apply_overrides(cfg: TrainConfig, **overrides) -> TrainConfig:
    """A copy of `cfg` with the non-None overrides applied and validated.

    Overriding `epochs` alone rescales the phase lengths (p_warm, anneal, ε warm-up) in proportion,
    so a shorter run keeps the preset's schedule shape.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ConfigError(f"unknown training option(s): {', '.join(bad)}")
    kw = {k: v for k, v in overrides.items() if v is not None}
    new = dataclasses.replace(cfg, **kw)
    if "epochs" in kw and kw["epochs"] != cfg.epochs and cfg.epochs > 0:
        scale = kw["epochs"] / cfg.epochs
        for k in ("p_warm_epochs", "anneal_epochs", "eps_warm_epochs"):
            if k not in kw:
                setattr(new, k, getattr(cfg, k) * scale)
    validate(new)
    return new


_FLOATS = ("eps_test", "eps_train", "mix", "kappa", "kappa_start", "lam_start", "lam_end", "clip",
           "p_warm_epochs", "anneal_epochs", "eps_warm_epochs", "p_start", "p_end", "lr", "beta1",
           "beta2", "adam_eps", "weight_decay", "head_weight_decay", "ema_decay", "lr_warm_epochs", "residual")
_COUNTS = ("holdout", "train_limit", "test_limit", "eval_limit", "seed")  # >= 0 (None: unset)


def validate(cfg: TrainConfig) -> None:
    """Raise ConfigError with one line for an inconsistent configuration (before any work: it also
    bounds the model's size and checks the data set, backend and device names)."""
    import math

    for name in _FLOATS:
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise ConfigError(f"{name} must be a finite number, got {v!r}")
    for name in _COUNTS:
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"{name} must be an integer >= 0, got {v!r}")
    _check_names(cfg)
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.p_warm_epochs < 0 or cfg.anneal_epochs < 0 or cfg.eps_warm_epochs < 0:
        raise ConfigError("phase lengths must be >= 0")
    if cfg.p_warm_epochs + cfg.anneal_epochs > cfg.epochs + 1e-9:
        raise ConfigError(f"p_warm_epochs + anneal_epochs ({cfg.p_warm_epochs} + "
                          f"{cfg.anneal_epochs}) exceed epochs ({cfg.epochs})")
    if cfg.loss not in ("hinge", "ibp", "mixture"):
        raise ConfigError(f"unknown loss {cfg.loss!r}; choose hinge, ibp or mixture")
    head = ARCHS[cfg.arch].head
    if cfg.loss == "ibp" and not head:
        raise ConfigError(f"the ibp loss needs an MLP head (an arch ending in -mlp), not {cfg.arch}")
    if cfg.loss == "hinge" and head:
        raise ConfigError(f"the hinge loss is for pure ℓ∞-dist nets (no MLP head), not {cfg.arch}; use ibp or mixture")
    for name in ("batch_size", "members", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.lr_warm_epochs is not None and not 0 <= cfg.lr_warm_epochs <= cfg.epochs:
        raise ConfigError(f"lr_warm_epochs must be in [0, epochs], got {cfg.lr_warm_epochs}")
    if cfg.lr <= 0 or cfg.eps_train < 0 or cfg.eps_test < 0:
        raise ConfigError("lr must be > 0 and eps values >= 0")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {cfg.ema_decay}")
    if not 1.0 <= cfg.p_start <= cfg.p_end:
        raise ConfigError("need 1 <= p_start <= p_end")
    for name in ("mix", "kappa"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1]")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads must be >= 1, got {cfg.threads}")
    if cfg.loss == "mixture" and cfg.eps_train <= 0:
        raise ConfigError("the mixture loss needs eps_train > 0")
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if cfg.adam_eps <= 0 or cfg.weight_decay < 0 or (cfg.head_weight_decay or 0.0) < 0:
        raise ConfigError("adam_eps must be > 0 and weight decays >= 0")
    for name in ("train_limit", "test_limit", "eval_limit"):
        if getattr(cfg, name) == 0:
            raise ConfigError(f"{name} must be >= 1 (or unset), got 0")
    _check_size(cfg)


def _check_names(cfg: TrainConfig) -> None:
    import re

    from nets.ops import BACKENDS
    from common.datasets import DATASETS, canonical_name

    from nets.optim import OPTIMIZERS
    from nets.ops import RELAXATIONS

    for name, known in (("arch", ARCHS), ("optimizer", OPTIMIZERS), ("relaxation", RELAXATIONS)):
        if getattr(cfg, name) not in known:
            raise ConfigError(f"unknown {name} {getattr(cfg, name)!r}; choose one of {', '.join(known)}")
    if canonical_name(str(cfg.dataset)) is None:
        raise ConfigError(f"unknown data set {cfg.dataset!r}; choose one of {', '.join(sorted(DATASETS))}")
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(cfg.device)):
        raise ConfigError(f"unknown device {cfg.device!r}; use auto, cpu, cuda or cuda:N")


def _check_size(cfg: TrainConfig) -> None:
    """The model (each member) must pass nets.config.validate_config, size bound included."""
    from nets.config import validate_config
    from common.datasets import DATASETS, canonical_name
    from common.errors import ModelError

    spec = DATASETS[canonical_name(str(cfg.dataset))]
    try:
        validate_config(model_config_for(cfg, spec.input_shape, spec.num_classes))
    except ModelError as e:
        raise ConfigError(str(e)) from None
