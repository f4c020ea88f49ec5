"""Data and rich tables for the commands: `certify`, `check`, `lipschitz`, `attack`, `audit`, and the
per-epoch lines and result table of `train` and the demo.

:func:`lipschitz_report` is the library function behind ``verify_cli.py lipschitz``: per node the
proven local bound (its own ℓ∞→ℓ∞ constant, variable inputs counted as 1-Lipschitz) and the
cumulative bound w.r.t. the graph input, the global bound, and the nodes whose local bound exceeds
1 (beyond the directed-rounding slack :data:`ONE_SLACK`), i.e. the nodes that break
1-Lipschitzness. The table functions only format; they never compute a bound.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from verify.guarantee import REAL

__all__ = ["ONE_SLACK", "lipschitz_report", "lipschitz_table", "certify_table", "check_table", "attack_table",
           "summary_table", "two_column_table", "path_line", "label_of", "value_of", "plural", "audit_tables",
           "epoch_printer", "result_table"]

ONE_SLACK = 1e-9  # upward-rounded products of 1.0 land a few ulps above 1


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def lipschitz_report(model_path) -> dict[str, Any]:
    """{"model", "global", "guarantee", "nodes": [{name, op_type, local, cumulative, breaks}],
    "breaking", "claimed"} — bounds are floats, None meaning unbounded (math.inf). ``guarantee`` says
    what the bound is about: the exact real function of the stored weights (theorem (a)); onnxruntime's
    float32 rounding is not Lipschitz at all (x + 1 maps two inputs 2^-47 apart to outputs 2^-23 apart)."""
    from verify.front.model import load_model

    m = load_model(model_path)
    nodes = []
    for n in m.node_lipschitz():
        breaks = not (n.local <= 1.0 + ONE_SLACK)
        nodes.append({"name": n.name, "op_type": n.op_type, "local": _num(n.local),
                      "cumulative": _num(n.cumulative), "breaks": breaks})
    claimed = m.metadata.get("claimed_lipschitz")
    g = float(m.lipschitz())
    return {
        "model": str(model_path), "model_sha256": m.sha256, "global": _num(g), "guarantee": REAL,
        "one_lipschitz": g <= 1.0 + ONE_SLACK, "nodes": nodes,
        "breaking": [n["name"] for n in nodes if n["breaks"]], "claimed": claimed,
    }


def _fmt(v) -> str:
    if v is None:
        return "∞"
    return f"{v:.6g}"


def lipschitz_table(rep: dict[str, Any], empirical=None):
    """Per-node table (+ footer rows: the proven global upper bound and, if given, the empirical
    search result ``{"ratio", "ratio_lower"}`` — a lower bound of the true constant)."""
    from rich.table import Table

    t = Table(title=f"ℓ∞ Lipschitz bounds: {rep['model']}")
    t.add_column("node")
    t.add_column("op")
    t.add_column("local", justify="right")
    t.add_column("cumulative", justify="right")
    t.add_column("1-Lipschitz?")
    for n in rep["nodes"]:
        ok = "[red]breaks[/red]" if n["breaks"] else "[green]yes[/green]"
        t.add_row(n["name"], n["op_type"], _fmt(n["local"]), _fmt(n["cumulative"]), ok)
    t.add_section()
    t.add_row("[bold]global (proven upper bound)[/bold]", "", "", _fmt(rep["global"]),
              "[green]yes[/green]" if rep["one_lipschitz"] else "[red]no[/red]")
    if rep.get("claimed") is not None:
        t.add_row("claimed by metadata", "", "", str(rep["claimed"]), "")
    if empirical is not None:
        t.add_row("[bold]empirical ratio found (search)[/bold]", "", "", _fmt(empirical["ratio"]), "")
        t.add_row("[bold]rigorous lower bound there[/bold]", "", "", _fmt(empirical["ratio_lower"]), "")
    return t


LABELS = {"n": "samples", "out": "output", "bytes": "size (bytes)", "linf_nodes": "linf nodes",
          "checked": "checked (ONNX checker + onnxruntime parity)", "dataset": "data set",
          "eps": "ε", "eps_train": "ε_train", "claimed_lipschitz": "claimed Lipschitz bound",
          "robust_accuracy": "PGD robust accuracy", "falsified": "falsified (witness replayed in onnxruntime)",
          "unknown": "unknown (no witness found)", "seconds": "seconds", "skipped_certified": "skipped (certified)"}


def plural(n: int, word: str) -> str:
    """"1 sample", "2 samples"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def label_of(key: str) -> str:
    """The human label of a summary key ("clean_accuracy" → "clean accuracy")."""
    return LABELS.get(key, key.replace("_", " "))


def value_of(key: str, v) -> str:
    """A summary value for people: accuracies as percentages, other floats to 6 digits, lists joined."""
    if isinstance(v, float) and key.endswith("accuracy"):
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:.2f}" if key == "seconds" else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return " ".join(map(str, v))
    return "—" if v is None else str(v)


def two_column_table(title: str):
    """A label | value table whose values fold (a long path wraps, it is never cut)."""
    from rich.table import Table

    t = Table(title=title, show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right", overflow="fold")
    return t


def summary_table(summary: dict[str, Any], title: str = "", keys=None):
    """A generic summary as a table of human labels and values (KEYS: which, in order; by default all
    but the output path "out", which the CLI prints on a line of its own, see :func:`path_line`)."""
    t = two_column_table(title)
    for k in [k for k in summary if k != "out"] if keys is None else keys:
        if k in summary:
            t.add_row(label_of(k), value_of(k, summary[k]))
    return t


def path_line(console, what: str, path) -> None:
    """Print ``WHAT: PATH`` on a line of its own that the terminal wraps: a path is never cut or
    folded by rich, so it can be copied whole at any terminal width."""
    console.print(f"{what}: {path}", highlight=False, soft_wrap=True)


def certify_table(s: dict[str, Any]):
    """Summary table of a certification run."""
    t = two_column_table(f"certification at ε = {s['eps']:g} ({s['method']})")
    t.add_row("samples", str(s["n"]))
    t.add_row("clean accuracy", f"{100 * s['clean_accuracy']:.2f} %")
    t.add_row("certified accuracy", f"{100 * s['certified_accuracy']:.2f} %")
    for k, v in s["counts"].items():
        t.add_row(f"  {label_of(k)}", str(v))
    t.add_row("mean certified radius", f"{s['mean_certified_radius']:.6g}")
    t.add_row("global Lipschitz bound", _fmt(_num(s.get("lipschitz", math.inf))))
    t.add_row("resumed records", str(s.get("resumed", 0)))
    t.add_row("seconds", f"{s.get('seconds', 0.0):.2f}")
    return t


def check_table(rep: dict[str, Any]):
    """Table of a passed check."""
    t = two_column_table("certificate check: [green]passed[/green]")
    t.add_row("ε", repr(rep["eps"]))
    t.add_row("method / guarantee", f"{rep['method']} / {rep['guarantee']}")
    t.add_row("coverage", rep["coverage"])
    sel = rep["selection"]
    limit = "all" if sel["limit"] is None else f"first {sel['limit']}"
    t.add_row("selection", f"{limit}, shard {sel['shard']}, n_total {sel['n_total']}")
    for k, v in rep["counts"].items():
        t.add_row(f"  {label_of(k)}", str(v))
    t.add_row("model sha256", rep["model_sha256"])
    return t


def attack_table(summary: dict):
    """The `attack` summary: accuracies, counts, witness file and the soundness alarm's verdict."""
    t = summary_table(summary, f"attack at ε = {summary['eps']:g}" if "eps" in summary else "attack",
                      ("n", "clean_accuracy", "robust_accuracy", "falsified", "misclassified", "unknown",
                       "skipped_certified", "seconds"))
    if "alarm_pairs_checked" in summary:
        t.add_row("soundness alarm", f"clear ({plural(summary['alarm_pairs_checked'], 'falsified sample')} "
                  "checked against the certificates)")
    return t


def _fmt_pct(v) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:6.2f}"


def epoch_printer(console, eval_on: str = "eval"):
    """A `log` callback for nets.train that prints one rich line per epoch."""

    def log(row) -> None:
        p = "∞" if math.isinf(row.p) else f"{row.p:7.1f}"
        member = f"m{row.member} " if row.member else ""
        console.print(
            f"{member}epoch [bold]{row.epoch:3d}[/]  loss {row.loss:7.4f}  train {_fmt_pct(row.train_acc)}%"
            f"  p {p:>7}  ε_train {row.eps_train:.3f}  lr {row.lr:.5f}  │ {eval_on}: clean "
            f"[green]{_fmt_pct(row.clean)}%[/]  certified [cyan]{_fmt_pct(row.certified)}%[/]"
            f"  ({row.seconds:.1f}s)",
            highlight=False,
        )

    return log


def result_table(result, title: str = "training result"):
    """Final metrics (EMA model, p = ∞, full test split) as a rich table."""
    from rich.table import Table

    from nets.presets import describe_model

    t = Table(title=title, show_header=False)
    cfg = result.config
    test = result.metrics["test"]
    t.add_row("data set", f"{cfg.dataset} (test n = {test['n']})")
    t.add_row("model", describe_model(cfg) + (f", {cfg.members} members (fusion)" if cfg.members > 1 else ""))
    t.add_row("clean accuracy", f"{_fmt_pct(test['clean_accuracy'])} %")
    t.add_row(f"certified accuracy (ε = {test['eps']:.4g})",
              f"{_fmt_pct(test['certified_accuracy'])} %  (float32 estimate; `certify` proves it)")
    t.add_row("train time", f"{result.metrics['train_seconds']:.1f} s")
    if result.checkpoint is not None:
        t.add_row("checkpoint", str(result.checkpoint))
    return t


def audit_tables(s: dict):
    """(claims-vs-measured table, per-ε table) for the CLI."""
    from rich.table import Table

    from pipeline.audit_report import num, pct

    c = s["claims"]
    t = Table(title=f"audit of {Path(s['model']).name} at ε = {s['eps']} (n = {s['n']})")
    t.add_column("quantity")
    t.add_column("claimed")
    t.add_column("measured")
    t.add_row("ℓ∞ Lipschitz (logits)", str(c.get("claimed_lipschitz", "—")),
              f"≤ {num(s['lipschitz']['proven_upper_bound'])}: {s['lipschitz']['verdict']}")
    t.add_row("ε_train", str(c.get("eps_train", "—")), "")
    t.add_row("clean accuracy", "", pct(s["clean_accuracy"]))
    t.add_row("certified accuracy", "", pct(s["certified_accuracy"]))
    t.add_row("PGD robust accuracy", "", pct(s["robust_accuracy"]))
    t.add_row("gap robust − certified", "", pct(s["gap_robust_minus_certified"]))
    t.add_row("falsified (witnesses replayed)", "", str(s["falsified"]))
    t.add_row("soundness alarm", "", s["soundness_alarm"])
    g = Table(title="accuracy against ε")
    for col in ("ε", "certified", "PGD robust", "falsified"):
        g.add_column(col)
    for p in s["curve"]:
        g.add_row(f"{p['eps']:g}", pct(p["certified_accuracy"]), pct(p["robust_accuracy"]), str(p["falsified"]))
    return t, g
