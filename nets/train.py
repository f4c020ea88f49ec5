"""The training loop of ℓ∞-dist nets (one loop for every model kind), EMA, DDP, ensembles.

`run_training(cfg, out)` trains `cfg.members` members (seeds seed, seed+1, ...; independently, or
jointly as one fusion ensemble with `cfg.joint`), each
with Adam(β = (0.9, 0.99), eps 1e-10) (or AdamW / MAdam: nets.optim), the schedules of nets.schedules updated every iteration, and
an EMA of parameters AND buffers (`torch.optim.swa_utils.AveragedModel`, use_buffers=True). The EMA
copy is what is evaluated each epoch (p = ∞, eval mode), returned and saved (nets.checkpoint).

Reproducibility: with the same cfg (seed included), device and backend, two runs give the same
weights (model init from `torch.manual_seed(seed)`; data order from (seed, epoch); augmentation
from (seed, epoch, rank)).

Multi-GPU: launch with `torchrun --nproc_per_node N verify_cli.py train ...`. Every rank uses the
SAME seed (identical init; DDP also broadcasts rank 0's weights), a disjoint shard of each epoch's
shared permutation, and its own augmentation stream. Batch size is per step over all ranks
(each rank gets batch_size // world). Only rank 0 evaluates, logs and writes the checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nets import losses, schedules
from nets.data import AUGMENT, DataSplits, iterate_batches, load_splits, num_batches
from nets.ensemble import ConvexEnsemble
from nets.evaluate import evaluate, margin_lower_bounds
from nets.archs import ARCHS
from nets.models import build_model, set_backend, set_p, set_relaxation
from nets.optim import make_optimizer
from nets.presets import ConfigError, TrainConfig, TrainingDiverged, model_config_for, validate

__all__ = ["EpochLog", "TrainResult", "DistInfo", "run_training", "train_member", "make_ema",
           "resolve_device", "model_config_for"]


@dataclass
class EpochLog:
    """One line of training progress (accuracies of the EMA model on the evaluation slice)."""

    member: int
    epoch: int
    loss: float
    train_acc: float
    p: float           # p at the end of the epoch
    eps_train: float
    lr: float
    clean: float
    certified: float | None
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module                   # the EMA model (or ConvexEnsemble of EMA members), eval mode
    history: list[EpochLog]
    metrics: dict
    checkpoint: Path | None
    config: TrainConfig
    eval_on: str = "test"
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DistInfo:
    """torchrun environment, parsed as integers (the seed code kept WORLD_SIZE a string)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as e:
            raise ConfigError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {e}") from None
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"bad torchrun environment: rank {rank} of world {world}")
        return cls(rank, world, local)


def resolve_device(spec: str, dist: DistInfo = DistInfo()) -> torch.device:
    """'auto' → cuda (this rank's local GPU) when available, else cpu."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and dist.enabled:
        spec = f"cuda:{dist.local_rank}"
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        who = f"rank {dist.rank} (LOCAL_RANK {dist.local_rank}) " if dist.enabled else ""
        raise ConfigError(f"{who}needs device {dev} but only {torch.cuda.device_count()} CUDA device(s) "
                          f"are visible; start at most that many processes per node, or use --device cpu")
    return dev


@contextmanager
def deterministic_algorithms():
    """torch's deterministic mode for the duration (restored after): training results are a function
    of the seed. `warn_only`: an op without a deterministic implementation warns instead of failing.
    On CUDA, cuBLAS also needs CUBLAS_WORKSPACE_CONFIG (set here unless the user set it)."""
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    fill = torch.utils.deterministic.fill_uninitialized_memory
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # a NaN fill of every empty(): cost only
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = fill


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """EMA of parameters AND buffers (MeanShift running means): ema ← decay·ema + (1−decay)·model."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


class _Objective(nn.Module):
    """One forward for DDP: returns (logits, margin lower bounds at ε or None)."""

    def __init__(self, model: nn.Module, needs_bounds: bool):
        super().__init__()
        self.model = model
        self.needs_bounds = needs_bounds

    def forward(self, x: Tensor, y: Tensor, eps: float):
        m = self.model
        if isinstance(m, ConvexEnsemble):  # joint training: fused logits and fused bounds
            if not self.needs_bounds:
                return m(x), None
            return margin_lower_bounds(m, x, y, eps)
        if m.head is None:
            return m(x), None
        feats = m.trunk(x)
        logits = m.head(feats)
        lower = losses.ibp_margin_lower(m.head, feats, eps, y) if self.needs_bounds else None
        return logits, lower


def _loss(cfg: TrainConfig, logits: Tensor, lower: Tensor | None, y: Tensor, eps: float,
          it: int, sch: schedules.Schedules) -> Tensor:
    if cfg.loss == "hinge":
        return losses.hinge_loss(logits, y, theta=2.0 * eps, mix=cfg.mix)
    if cfg.loss == "ibp":
        return losses.ibp_loss(logits, lower, y, sch.kappa(it))
    return losses.mixture_loss(logits, y, max(eps, 1e-6), sch.lam(it), cfg.clip, margin_lower=lower)


def _all_reduce_mean(values: list[float], dist: DistInfo, device) -> list[float]:
    if not dist.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return (t / dist.world).tolist()


def train_member(cfg: TrainConfig, splits: DataSplits, *, seed: int, member: int = 0,
                 device=torch.device("cpu"), dist: DistInfo = DistInfo(),
                 log: Callable[[EpochLog], None] | None = None,
                 eval_xy: tuple[Tensor, Tensor] | None = None) -> tuple[nn.Module, list[EpochLog]]:
    """Train one model from `seed`; returns (EMA model in eval mode at p = ∞, per-epoch log)."""
    mcfg = model_config_for(cfg, splits.input_shape)
    if cfg.joint and cfg.members > 1:
        parts = []
        for k in range(cfg.members):
            torch.manual_seed(seed + k)  # same on every rank: identical init
            parts.append(build_model(mcfg))
        model: nn.Module = ConvexEnsemble(parts, mode="fusion").to(device)
    else:
        torch.manual_seed(seed)  # same on every rank: identical init
        model = build_model(mcfg).to(device)
    set_backend(model, cfg.backend)
    set_relaxation(model, cfg.relaxation)
    model.train()
    ema = make_ema(model, cfg.ema_decay)
    needs_bounds = cfg.loss in ("ibp", "mixture") and ARCHS[cfg.arch].head
    obj: nn.Module = _Objective(model, needs_bounds)
    if dist.enabled:
        obj = nn.parallel.DistributedDataParallel(
            obj, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    per_rank_batch = max(1, cfg.batch_size // dist.world)
    ipe = num_batches(len(splits.train_x), per_rank_batch, dist.world)
    sch = schedules.from_config(cfg, ipe)
    aug = AUGMENT.get(splits.name) if cfg.augment else None
    head_wd = cfg.weight_decay if cfg.head_weight_decay is None else cfg.head_weight_decay
    history: list[EpochLog] = []
    it = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        tot_loss = torch.zeros((), dtype=torch.float64, device=device)  # on device: no sync per step
        tot_correct = torch.zeros((), dtype=torch.float64, device=device)
        tot_n = 0
        p = eps = lr = float("nan")
        for xb, yb in iterate_batches(splits.train_x, splits.train_y, per_rank_batch, epoch=epoch,
                                      seed=seed, aug=aug, rank=dist.rank, world=dist.world):
            p, eps, lr = sch.p(it), sch.eps(it), sch.lr(it)
            set_p(model, p)
            for g in opt.param_groups:
                g["lr"] = lr
            logits, lower = obj(xb, yb, eps)
            loss = _loss(cfg, logits, lower, yb, eps, it, sch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.weight_decay or head_wd:
                losses.apply_decoupled_weight_decay_(model, p, lr * cfg.weight_decay, lr * head_wd)
            ema.update_parameters(model)
            n = len(yb)
            tot_loss += loss.detach().double() * n
            tot_correct += (logits.detach().argmax(1) == yb).sum().double()
            tot_n += n
            it += 1
        mean_loss, acc = _all_reduce_mean([float(tot_loss) / max(tot_n, 1),
                                           float(tot_correct) / max(tot_n, 1)], dist, device)
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"non-finite loss in epoch {epoch + 1} (p up to {p:g}, lr {lr:g})")
        ev = {"clean_accuracy": float("nan"), "certified_accuracy": None}
        if dist.is_main and eval_xy is not None:
            ev = evaluate(ema.module, eval_xy[0], eval_xy[1], cfg.eps_test, cfg.eval_batch_size)
        row = EpochLog(member, epoch + 1, mean_loss, acc, p, eps, lr, ev["clean_accuracy"],
                       ev["certified_accuracy"], time.perf_counter() - t0)
        history.append(row)
        if log is not None and dist.is_main:
            log(row)
    final = ema.module
    set_p(final, math.inf)
    final.eval()
    return final, history


def _eval_slice(cfg: TrainConfig, splits: DataSplits) -> tuple[str, tuple[Tensor, Tensor]]:
    if len(splits.holdout_x):
        name, x, y = "holdout", splits.holdout_x, splits.holdout_y
    else:
        name, x, y = "test", splits.test_x, splits.test_y
    if cfg.eval_limit is not None:
        x, y = x[:cfg.eval_limit], y[:cfg.eval_limit]
    return name, (x, y)


def check_output(cfg: TrainConfig, out: str | os.PathLike) -> None:
    """Refuse (one line, before any work) a checkpoint path that run_training must not write: a file,
    a folder that is no checkpoint, a folder holding the training data, a device or fifo."""
    from nets.checkpoint import check_target
    from common.outputs import check_dir_output, data_files

    validate(cfg)
    check_dir_output(out, data_files(cfg.dataset, cfg.data_dir))
    check_target(out)


def run_training(cfg: TrainConfig, out: str | os.PathLike | None = None, *,
                 log: Callable[[EpochLog], None] | None = None,
                 splits: DataSplits | None = None) -> TrainResult:
    """Train per `cfg`, evaluate the EMA model on the test split, save a checkpoint to `out`.

    Returns the result on every rank (checkpoint written by rank 0 only). `splits` lets callers
    pass already-loaded data.
    """
    validate(cfg)
    if out is not None:
        check_output(cfg, out)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    dist = DistInfo.from_env()
    device = resolve_device(cfg.device, dist)
    if dist.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world)
    if splits is None:
        splits = load_splits(cfg.dataset, cfg.data_dir, holdout=cfg.holdout,
                             train_limit=cfg.train_limit, test_limit=cfg.test_limit)
    splits = splits.to(device)
    eval_on, eval_xy = _eval_slice(cfg, splits)
    t0 = time.perf_counter()
    members, history = [], []
    for k in range(1 if cfg.joint else cfg.members):
        with deterministic_algorithms():
            m, h = train_member(cfg, splits, seed=cfg.seed + k, member=k, device=device, dist=dist,
                                log=log, eval_xy=eval_xy)
        members.append(m)
        history.extend(h)
    train_seconds = time.perf_counter() - t0
    model = members[0]
    if cfg.members > 1 and not cfg.joint:
        model = ConvexEnsemble(members, mode="fusion").eval()
    test = evaluate(model, splits.test_x, splits.test_y, cfg.eps_test, cfg.eval_batch_size)
    metrics = {
        "test": test,
        "train_seconds": round(train_seconds, 3),
        "eval_on": eval_on,
        "history": [asdict(r) for r in history],
        "note": "float32 training-time estimate; sound certificates come from `verify_cli.py certify`",
    }
    ckpt = None
    if out is not None and dist.is_main:
        from nets.checkpoint import save_checkpoint

        meta = {"train": cfg.to_dict(), "dataset": splits.name, "input_range": [0.0, 1.0],
                "eps_train": float(cfg.eps_train), "eps_test": float(cfg.eps_test),
                "metrics": _json_safe(metrics)}
        ckpt = save_checkpoint(out, model.to("cpu"), meta)
        model.to(device)
    if dist.enabled:
        torch.distributed.barrier()
    return TrainResult(model, history, metrics, ckpt, cfg, eval_on)


def _json_safe(obj):
    """Replace non-finite floats (e.g. p = inf) by strings so the metadata stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
