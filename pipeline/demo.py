"""The offline main job (`verify_cli.py demo`) and the rich output of `train`.

`run_demo` is an ordered list of steps sharing one `DemoState`; each step is a small function
`step(state) -> None` that may add entries to `state.summary`. The integrator appends steps
(export → certify → attack) to `DEMO_STEPS` without touching the training step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from nets.presets import TrainConfig, apply_overrides, describe_model, get_preset
from pipeline.tables import epoch_printer, result_table

__all__ = ["DemoState", "DEMO_CHECKPOINT", "DEMO_STEPS", "run_demo", "train_preset"]


def train_preset(preset: str, out: str | Path | None, console: Console | None = None,
                 **overrides):
    """Train `preset` with option overrides, printing per-epoch progress; returns TrainResult."""
    from nets.train import DistInfo, run_training

    cfg = apply_overrides(get_preset(preset), **overrides)
    cfg.notes = dict(cfg.notes, preset=preset)
    log = None
    if console is not None and DistInfo.from_env().is_main:
        eval_on = "holdout" if cfg.holdout else "test"
        if cfg.eval_limit is not None:
            eval_on += f"[:{cfg.eval_limit}]"
        console.print(f"[bold]train[/] preset {preset}: {cfg.dataset}, {describe_model(cfg)}, "
                      f"{cfg.optimizer}, {cfg.relaxation}, {cfg.epochs} epochs (p=8 for {cfg.p_warm_epochs:g}, "
                      f"anneal {cfg.anneal_epochs:g}), batch {cfg.batch_size}, seed {cfg.seed}",
                      highlight=False)
        log = epoch_printer(console, eval_on)
    return run_training(cfg, out, log=log)


# ---------------------------------------------------------------- demo


DEMO_CHECKPOINT = "checkpoint"  # the demo's checkpoint folder inside its --out folder


@dataclass
class DemoState:
    """What the demo steps share."""

    out: Path
    console: Console
    preset: str = "digits-small"
    overrides: dict = field(default_factory=dict)
    result: object | None = None          # nets.train.TrainResult after the train step
    checkpoint: Path | None = None
    summary: dict = field(default_factory=dict)


def step_train(state: DemoState) -> None:
    """Train the offline preset (scikit-learn digits, no network, no ../shared) and evaluate."""
    res = train_preset(state.preset, state.out / DEMO_CHECKPOINT, state.console, **state.overrides)
    state.result, state.checkpoint = res, res.checkpoint
    test = res.metrics["test"]
    state.summary.update(checkpoint=str(res.checkpoint), clean_accuracy=test["clean_accuracy"],
                         certified_accuracy_estimate=test["certified_accuracy"], eps=test["eps"],
                         train_seconds=res.metrics["train_seconds"])
    state.console.print(result_table(res, title=f"demo: {state.preset}"))


DEMO_STEPS: list[tuple[str, Callable[[DemoState], None]]] = [("train", step_train)]


def run_demo(out: str | Path = "demo_out", console: Console | None = None,
             steps: list[tuple[str, Callable[[DemoState], None]]] | None = None,
             **overrides) -> DemoState:
    """Run the demo steps in order into folder `out`; returns the shared state (with summary)."""
    console = console or Console()
    state = DemoState(out=Path(out), console=console, overrides=overrides)
    state.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name, step in steps or DEMO_STEPS:
        t0 = time.perf_counter()
        console.rule(f"[bold]{name}")
        step(state)
        state.summary.setdefault("step_seconds", {})[name] = round(time.perf_counter() - t0, 2)
    state.summary["total_seconds"] = round(time.perf_counter() - start, 2)
    console.print(f"demo done in {state.summary['total_seconds']:.1f} s", highlight=False)
    return state


def demo_config(**overrides) -> TrainConfig:
    """The configuration the demo trains (for documentation and tests)."""
    return apply_overrides(get_preset("digits-small"), **overrides)
