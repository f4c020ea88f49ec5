"""The demo's steps after training: export → certify → attack (with the soundness alarm) → summary.

`pipeline.demo.run_demo` runs an ordered list of `(name, step)` pairs over one `DemoState`; this module
adds the steps that cross the ONNX boundary. It lives in export/ because export is the one package
that may see both sides: the torch checkpoint (nets) and the ONNX file the verifier reads. The
verifier steps only ever receive the ONNX file's path, exactly as a third party's model would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from export.onnx_export import export_checkpoint

DEMO_DATA = "digits"  # the offline default: scikit-learn's bundled 8x8 digits (test split)


def step_export(state) -> None:
    """Write the EMA weights of the trained checkpoint as one self-contained ONNX file."""
    path = state.out / "model.onnx"
    export_checkpoint(state.checkpoint, path)
    state.summary["onnx"] = str(path)
    state.console.print(f"exported {path} (checker + onnxruntime parity passed)", highlight=False)


def step_certify(state) -> None:
    """Soundly certify every test sample at the training ε; per-sample certificates as JSON Lines."""
    from verify.certify.run import run_certify
    from pipeline.tables import certify_table

    from pipeline.progress import progress_bar

    certs = state.out / "certificates.jsonl"
    with progress_bar("certifying") as progress:
        s = run_certify(state.summary["onnx"], DEMO_DATA, eps=state.summary["eps"], out=certs, progress=progress)
    state.summary.update(certificates=str(certs), sound_certified_accuracy=s["certified_accuracy"],
                         sound_clean_accuracy=s["clean_accuracy"], n=s["n"])
    state.console.print(certify_table(s))


def step_attack(state) -> None:
    """Falsify with PGD; witnesses are replayed in onnxruntime, and the alarm checks the certificates."""
    from verify.attack.api import run_attack
    from pipeline.progress import progress_bar

    witnesses = state.out / "witnesses.jsonl"
    with progress_bar("attacking") as progress:
        s = run_attack(state.summary["onnx"], DEMO_DATA, eps=state.summary["eps"], out=witnesses,
                       certs=state.summary["certificates"], progress=progress)
    state.summary.update(witnesses=str(witnesses), robust_accuracy=s["robust_accuracy"],
                         falsified=s["falsified"], alarm_pairs_checked=s.get("alarm_pairs_checked", 0))


def step_check(state) -> None:
    """Re-verify the certificate file independently of the code path that wrote it."""
    from verify.certify.check import run_check
    from pipeline.progress import progress_bar

    with progress_bar("checking") as progress:
        run_check(state.summary["certificates"], state.summary["onnx"], DEMO_DATA, progress=progress)
    state.summary["check"] = "passed"


def step_summary(state) -> None:
    """Print the bracket certified ≤ robust ≤ clean and where the artifacts are."""
    from pipeline.tables import plural, two_column_table

    s = state.summary
    t = two_column_table(f"demo summary: {DEMO_DATA} test split, n = {s['n']}, ε = {s['eps']:g}")
    t.add_row("clean accuracy", f"{100 * s['sound_clean_accuracy']:.2f} %")
    t.add_row("certified accuracy (sound, outward rounding)", f"{100 * s['sound_certified_accuracy']:.2f} %")
    t.add_row("PGD robust accuracy (upper bound)", f"{100 * s['robust_accuracy']:.2f} %")
    t.add_row("gap robust − certified", f"{100 * (s['robust_accuracy'] - s['sound_certified_accuracy']):.2f} points")
    t.add_row("falsified (witnesses replayed in onnxruntime)", str(s["falsified"]))
    t.add_row("soundness alarm", f"clear ({plural(s['alarm_pairs_checked'], 'falsified sample')} cross-checked)")
    t.add_row("certificate check", s.get("check", "not run"))
    for key in ("checkpoint", "onnx", "certificates", "witnesses"):
        t.add_row(key, s[key])
    state.console.print(t)


PIPELINE_STEPS: list[tuple[str, Callable]] = [
    ("export", step_export),
    ("certify", step_certify),
    ("attack", step_attack),
    ("check", step_check),
    ("summary", step_summary),
]


def resolve_to_onnx(model: Path, out_dir: Path, *, dataset: str | None) -> tuple[Path, dict]:
    """The ONNX file to audit for MODEL, and where it came from.

    MODEL may be an ONNX file (used as is), our checkpoint folder (exported into OUT_DIR), or a
    checkpoint of the seed papers' code (loaded with weights_only=True, converted, exported).
    """
    from common.errors import LinfVerifyError

    if model.is_dir():
        onnx_path = out_dir / "model.onnx"
        export_checkpoint(model, onnx_path)
        return onnx_path, {"kind": "linfverify-checkpoint", "path": str(model)}
    if model.suffix.lower() == ".onnx":
        return model, {"kind": "onnx", "path": str(model)}
    from export.onnx_export import export_model
    from nets.seed_compat import convert_seed_checkpoint
    from common.datasets import canonical_name

    ds = canonical_name(dataset) if dataset else None
    if ds is None:
        raise LinfVerifyError("a seed checkpoint needs --seed-dataset (mnist, fashion-mnist, cifar10)")
    net, notes = convert_seed_checkpoint(model, ds)
    onnx_path = out_dir / "model.onnx"
    export_model(net, onnx_path, dataset=ds, metadata={"seed_conversion": notes})
    return onnx_path, {"kind": "seed-checkpoint", "path": str(model), **notes}
