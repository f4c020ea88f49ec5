"""linfverify command line: train, export, certify, check, attack, audit ℓ∞-dist nets.

One thin function per command; the work lives in nets/, export/, verify/ and props/.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.config_options import train_signature
from pipeline.cli_options import (App, BatchSizeOpt, DataDirOpt, DataOpt, DomainOpt, EpsOpt, GuaranteeOpt, JsonOpt,
                                LimitOpt, ModelArg, PresetSeedOpt, RestartsOpt, SeedOpt, SplitOpt, StepsOpt, out_option)
from common.outputs import EXIT_CODES, command_inputs, exit_code_of
from verify.guarantee import check_guarantee

EXIT_HELP = "Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()) + "."


app = App(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train, export, soundly certify and falsify ℓ∞-dist nets.\n\n" + EXIT_HELP,
)


def user_errors(fn):
    """Turn user-facing errors into one line on stderr and a distinct exit code (EXIT_HELP)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
        except Exception as e:
            known = exit_code_of(e)
            if known is None:
                raise
            code, line = known
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(code) from None

    return wrapper


def show(summary: dict, json_out: bool, table=None, title: str = "") -> None:
    """Print SUMMARY as one JSON object on stdout (--json) or as a rich table (TABLE(summary); default:
    human labels and values, pipeline.tables.summary_table)."""
    if json_out:
        import json

        typer.echo(json.dumps(summary))
        return
    from rich.console import Console

    from pipeline.tables import path_line, summary_table

    console = Console()
    console.print(table(summary) if table else summary_table(summary, title))
    if "out" in summary:
        path_line(console, "written", summary["out"])


# ---- commands: thin functions over library calls ----


@app.command()
@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CHECKPOINT", help="checkpoint directory (config.json + model.safetensors)")],
    out: Annotated[Path, out_option("the ONNX file")],
    opset: Annotated[int, typer.Option(help="default-domain ONNX opset (18..23)")] = 18,
    check: Annotated[bool, typer.Option("--check/--no-check",
                                        help="run the full ONNX checker and an onnxruntime parity run vs torch")] = True,
    json_out: JsonOpt = False,
):
    """Export a trained checkpoint to one self-contained ONNX file (linf ops + standard-op bodies)."""
    from export import export_checkpoint, read_metadata
    from nets.checkpoint import checkpoint_files
    from common.outputs import check_file_output, output_lock

    check_file_output(out, command_inputs(None, None, None, *checkpoint_files(checkpoint)))
    with output_lock(out):
        m = export_checkpoint(checkpoint, out, opset=opset, check=check)
    meta = read_metadata(m)
    linf_nodes = sum(1 for n in m.graph.node if n.domain == "linf")
    summary = {"out": str(out), "bytes": out.stat().st_size, "opset": opset, "nodes": len(m.graph.node),
               "linf_nodes": linf_nodes, "checked": check, **{k: meta.get(k) for k in
               ("architecture", "dataset", "eps_train", "claimed_lipschitz")}}
    show(summary, json_out, title="exported")


@app.command()
@user_errors
def certify(
    model: ModelArg,
    data: DataOpt,
    eps: EpsOpt,
    out: Annotated[Path, out_option("the certificates (JSON Lines)")],
    json_out: JsonOpt = False,
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = 256,
    shard: Annotated[Optional[str], typer.Option(help="I/N: only the selected positions p with p mod N = I")] = None,
    data_dir: DataDirOpt = None,
    domain: DomainOpt = (0.0, 1.0),
    method: Annotated[str, typer.Option(help="auto | lipschitz | ibp | crown | alpha-crown")] = "auto",
    split: SplitOpt = "test",
    bisect_steps: Annotated[int, typer.Option(min=0, max=64, help="IBP bisection steps for the radius (0..64)")] = 10,
    guarantee: GuaranteeOpt = "float32",
):
    """Soundly certify every selected sample at --eps; writes one certificate per sample (resumable)."""
    from verify.certify.run import run_certify
    from common.outputs import check_file_output, output_lock
    from pipeline.progress import progress_bar

    check_guarantee(guarantee)
    check_file_output(out, command_inputs(model, data, data_dir), companions=(".partial",))
    with output_lock(out), progress_bar("certifying") as progress:
        summary = run_certify(model, data, eps=eps, out=out, method=method, domain=domain,
                              batch_size=batch_size, limit=limit, shard=shard, data_dir=data_dir,
                              split=split, bisect_steps=bisect_steps, guarantee=guarantee, progress=progress)

    from pipeline.tables import certify_table

    show(summary, json_out, certify_table)


@app.command()
@user_errors
def check(
    certs: Annotated[Path, typer.Argument(metavar="CERTS", help="certificate file (JSON Lines) to re-verify")],
    model: Annotated[Path, typer.Option("--model", metavar="MODEL", help="the ONNX model the certificates claim")],
    data: DataOpt,
    data_dir: DataDirOpt = None,
    split: SplitOpt = "test",
    json_out: JsonOpt = False,
):
    """Re-verify a certificate file from the model and data (non-zero exit on any mismatch)."""
    from verify.certify.check import run_check
    from pipeline.progress import progress_bar
    from pipeline.tables import check_table

    with progress_bar("checking") as progress:
        summary = run_check(certs, model, data, data_dir=data_dir, split=split, progress=progress)
    show(summary, json_out, check_table)


@app.command()
@user_errors
def lipschitz(
    model: ModelArg,
    json_out: JsonOpt = False,
    search: Annotated[bool, typer.Option("--search", help="also run the empirical Lipschitz search (props): a lower bound")] = False,
    budget: Annotated[int, typer.Option(min=16, help="model evaluations for --search (at least 16)")] = 4096,
    seed: SeedOpt = 0,
):
    """Per-node proven ℓ∞ Lipschitz bounds, the global bound, and the nodes that break 1-Lipschitzness.

    The bounds are about the exact real function of the stored weights (guarantee "real", theorem (a)), not about
    onnxruntime's float32 rounding."""
    import json

    import numpy as np

    from pipeline.tables import lipschitz_report, lipschitz_table

    rep = lipschitz_report(model)
    note = None
    if search:
        try:
            from props.lipschitz import search_lipschitz
        except Exception as e:  # props is optional for this command
            note = f"empirical search unavailable ({type(e).__name__}: {e})"
        else:
            res = search_lipschitz(str(model), budget=budget, seed=seed)
            rep["empirical"] = {"ratio": float(res.ratio), "ratio_lower": float(getattr(res, "ratio_lower", res.ratio)),
                                "x": np.asarray(res.x).ravel().tolist(), "x_prime": np.asarray(res.x_prime).ravel().tolist()}
    if note:
        rep["empirical_note"] = note
    if json_out:
        typer.echo(json.dumps(rep))
        return
    from rich.console import Console

    Console().print(lipschitz_table(rep, rep.get("empirical")))
    if note:
        typer.echo(note, err=True)


def _train(preset: str = "digits-small", out: Optional[Path] = None, json_out: bool = False, **options):
    """Train an ℓ∞-dist net (any arch of nets.archs) from a preset, every TrainConfig field
    overridable by its option; writes a checkpoint directory (EMA weights)."""
    import json

    from rich.console import Console

    from pipeline.config_options import parse_options
    from pipeline.demo import train_preset
    from pipeline.tables import result_table
    from nets.presets import TrainConfig, apply_overrides, get_preset
    from nets.train import DistInfo, check_output
    from common.outputs import output_lock

    opts = parse_options(TrainConfig, options)
    if out is None:
        out = Path("runs") / f"{preset}-seed{opts.get('seed', 0)}"
    check_output(apply_overrides(get_preset(preset), **opts), out)  # config and --out, before any work
    console = Console(stderr=json_out)
    main = DistInfo.from_env().is_main  # torchrun: rank 0 writes the checkpoint, so it holds the lock
    with output_lock(out, make_parents=True) if main else contextlib.nullcontext():
        res = train_preset(preset, out, console, **opts)
    if not main:
        return
    if json_out:
        test = res.metrics["test"]
        typer.echo(json.dumps({"checkpoint": str(res.checkpoint), "n": test["n"], "eps": test["eps"],
                               "clean_accuracy": test["clean_accuracy"],
                               "certified_accuracy": test["certified_accuracy"],
                               "train_seconds": res.metrics["train_seconds"]}))
        return
    console.print(result_table(res))


_train.__signature__ = train_signature()
train = app.command(name="train")(user_errors(_train))


@app.command()
@user_errors
def demo(
    out: Annotated[Path, out_option("the folder of the demo outputs")] = Path("demo_out"),
    epochs: Annotated[Optional[int], typer.Option(help="override the demo's epochs (quicker, less accurate)")] = None,
    seed: PresetSeedOpt = None,
    json_out: JsonOpt = False,
):
    """The offline main job on scikit-learn's digits: train, export, certify, attack, check, summarise."""
    import json

    from rich.console import Console

    from pipeline.steps import PIPELINE_STEPS
    from pipeline.demo import DEMO_STEPS, run_demo

    from nets.checkpoint import check_target
    from pipeline.demo import DEMO_CHECKPOINT
    from common.outputs import check_dir_output, output_lock

    check_dir_output(out)
    check_target(out / DEMO_CHECKPOINT)
    with output_lock(out, make_parents=True):
        state = run_demo(out, Console(stderr=json_out), steps=DEMO_STEPS + PIPELINE_STEPS,
                         epochs=epochs, seed=seed)
    if json_out:
        typer.echo(json.dumps(state.summary))


@app.command()
@user_errors
def attack(
    model: ModelArg,
    data: DataOpt,
    eps: EpsOpt,
    out: Annotated[Path, out_option("the witness records (JSON Lines)")],
    steps: StepsOpt = 100,
    restarts: RestartsOpt = 1,
    targets: Annotated[int, typer.Option(help="targeted runs on the top-k other classes")] = 3,
    surrogate: Annotated[str, typer.Option(help="smoothed ℓp gradient for ℓ∞-dist layers: auto | on | off")] = "auto",
    limit: LimitOpt = None,
    batch_size: BatchSizeOpt = 256,
    seed: SeedOpt = 0,
    data_dir: DataDirOpt = None,
    domain: DomainOpt = (0.0, 1.0),
    split: SplitOpt = "test",
    certs: Annotated[Optional[Path], typer.Option(help="certificate file of this model: run the soundness alarm against it")] = None,
    skip_certified: Annotated[bool, typer.Option(help="do not attack samples --certs proves robust at ≥ eps (faster; the alarm then covers the rest)")] = False,
    json_out: JsonOpt = False,
):
    """Falsify with APGD (CE, DLR, targeted; smoothed gradients for ℓ∞-dist layers); every witness is replayed in onnxruntime."""
    from verify.attack.api import run_attack
    from verify.attack.pgd import AttackConfig
    from common.outputs import check_file_output, output_lock
    from pipeline.progress import progress_bar

    check_file_output(out, command_inputs(model, data, data_dir, certs))
    cfg = AttackConfig(steps=steps, restarts=restarts, n_target_classes=targets, surrogate=surrogate,
                       batch_size=batch_size, seed=seed)
    with output_lock(out), progress_bar("attacking") as progress:
        summary = run_attack(model, data, eps=eps, out=out, cfg=cfg, domain=domain, limit=limit,
                             data_dir=data_dir, split=split, certs=certs, skip_certified=skip_certified,
                             progress=progress)
    from pipeline.tables import attack_table

    show(summary, json_out, attack_table)


@app.command()
@user_errors
def kernels(
    json_out: JsonOpt = False,
):
    """Which distance-kernel path is active (C++ AVX2/generic, Triton, or the pure-torch reference, with why)."""
    from nets.kernels import kernel_info

    show(kernel_info(), json_out, title="distance kernels")


@app.command()
@user_errors
def audit(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="ONNX file, our checkpoint folder, or a seed-paper checkpoint (.pth, v1/v2)")],
    data: DataOpt,
    eps: EpsOpt,
    out: Annotated[Path, out_option("the report folder (summary.json, report.md, PNG, certificates, witnesses)")] = Path("audit_report"),
    limit: LimitOpt = None,
    grid: Annotated[Optional[str], typer.Option(help="comma-separated ε values for the plot (default: 0.25..1.25 × eps)")] = None,
    steps: StepsOpt = 100,
    restarts: RestartsOpt = 1,
    seed_dataset: Annotated[Optional[str], typer.Option(help="data set a seed checkpoint was trained on (default: --data)")] = None,
    data_dir: DataDirOpt = None,
    domain: DomainOpt = (0.0, 1.0),
    json_out: JsonOpt = False,
):
    """Audit a model's claims: Lipschitz bound per node, clean / certified / PGD-robust accuracy, falsified samples, plot."""
    import json

    from verify.attack.pgd import AttackConfig
    from common.errors import SoundnessAlarm
    from pipeline.audit import audit_grid, parse_grid, run_audit

    eps_grid = parse_grid(grid)
    audit_grid(eps, eps_grid, limit)  # every option checked before any work
    from pipeline.steps import resolve_to_onnx
    from nets.checkpoint import checkpoint_files
    from common.outputs import check_dir_output, output_lock, removed_on_error
    from pipeline.progress import progress_bar

    sources = checkpoint_files(model) if model.is_dir() else []
    check_dir_output(out, command_inputs(None if model.is_dir() else model, data, data_dir, *sources))
    with removed_on_error(out.parent, tree=False), output_lock(out, make_parents=True), \
            removed_on_error(out, tree=True, keep=(SoundnessAlarm,)), progress_bar("auditing") as progress:
        out.mkdir(parents=True, exist_ok=True)
        onnx_path, source = resolve_to_onnx(model, out, dataset=seed_dataset or data)
        cfg = AttackConfig(steps=steps, restarts=restarts)
        summary = run_audit(onnx_path, data, eps=eps, out_dir=out, eps_grid=eps_grid, limit=limit, cfg=cfg,
                            data_dir=data_dir, domain=domain, source=source, progress=progress)
    if json_out:
        typer.echo(json.dumps(summary))
        return
    from rich.console import Console

    from pipeline.tables import audit_tables

    console = Console()
    for table in audit_tables(summary):
        console.print(table)
    from pipeline.tables import path_line

    for what, name in (("report", "report.md"), ("plot", "accuracy_vs_eps.png"), ("summary", "summary.json")):
        path_line(console, what, out / name)


def main() -> None:
    """The ``linfverify`` console script ([project.scripts] in pyproject.toml)."""
    app(prog_name="linfverify")


@app.command()
@user_errors
def vnnlib(
    model: ModelArg,
    prop: Annotated[Path, typer.Argument(
        metavar="PROPERTY", show_default=False,
        help="VNN-LIB 1.0 or 2.0 property file (.vnnlib, or .vnnlib.gz; 2.0 needs the vnnlib2 extra)")],
    out: Annotated[Path, out_option("the results file (VNN-COMP format)")],
    timeout: Annotated[float, typer.Option(help="time limit in seconds")] = 60.0,
    seed: SeedOpt = 0,
    guarantee: GuaranteeOpt = "float32",
    json_out: JsonOpt = False,
):
    """Decide a VNN-COMP instance: unsat (proved), sat (witness replayed in onnxruntime), unknown or timeout."""
    from common.errors import LinfVerifyError
    from common.outputs import check_file_output, output_lock
    from verify.vnnlib.run import run_instance, write_result

    if not 0 < timeout < float("inf"):
        raise LinfVerifyError(f"--timeout must be a positive number of seconds, got {timeout}")
    check_guarantee(guarantee)
    check_file_output(out, command_inputs(model, None, None, prop))
    with output_lock(out):
        res = run_instance(model, prop, timeout, seed=seed, guarantee=guarantee)
        write_result(out, res)
    summary = res.summary()
    if not json_out:
        summary.pop("witness", None)
    show(summary, json_out, title="vnnlib")


if __name__ == "__main__":
    app()
