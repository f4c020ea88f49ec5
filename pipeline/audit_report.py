"""Render an audit summary (pipeline/audit.py) as Markdown and a PNG plot (its rich tables: pipeline/tables.py).

All files are written to a temp name in the report folder and renamed (never half-written).
The plot uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

from common.outputs import atomic_file

__all__ = ["write_report", "markdown", "plot_curve", "curve_figure", "pct", "num"]


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def num(v) -> str:
    return "∞ (unbounded)" if v is None else f"{v:.6g}"


def markdown(s: dict) -> str:
    """The Markdown report of a summary."""
    c = s["claims"]
    lines = [
        f"# Audit of `{Path(s['model']).name}`",
        "",
        f"model sha256 `{s['model_sha256']}`; data `{s['data']}` (first {s['n']} samples); "
        f"ε = {s['eps']} in input units; domain {s['domain']}; source: {s['source'].get('kind')}",
        "",
        "## Claims (metadata) vs measured",
        "",
        "| quantity | claimed | measured |",
        "|---|---|---|",
        f"| ℓ∞ Lipschitz constant of the logits | {c.get('claimed_lipschitz', '—')} | ≤ {num(s['lipschitz']['proven_upper_bound'])} (proof) — {s['lipschitz']['verdict']} |",
        f"| ε_train | {c.get('eps_train', '—')} | — |",
        f"| clean accuracy | {c.get('metrics', {}).get('clean_accuracy', '—') if isinstance(c.get('metrics'), dict) else '—'} | {pct(s['clean_accuracy'])} |",
        f"| certified accuracy at ε | {c.get('metrics', {}).get('certified_accuracy', '—') if isinstance(c.get('metrics'), dict) else '—'} | {pct(s['certified_accuracy'])} (sound) |",
        f"| PGD robust accuracy at ε | — | {pct(s['robust_accuracy'])} (upper bound of the true robust accuracy) |",
        f"| gap robust − certified | — | {pct(s['gap_robust_minus_certified'])} (the undecided samples) |",
        "",
        f"Other claims: architecture `{c.get('architecture', '—')}`, dataset `{c.get('dataset', '—')}`, "
        f"producer `{c.get('producer', '—')} {c.get('producer_version', '')}`.",
        "",
        "## Static Lipschitz bound per node",
        "",
        "| node | op | local bound | cumulative bound |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['name']} | {r['op_type']} | {num(r['local'])} | {num(r['cumulative'])} |"
              for r in s["lipschitz"]["per_node"]]
    lines += ["", "## Accuracy against ε", "", "| ε | certified | PGD robust | falsified | certified samples attacked |",
              "|---|---|---|---|---|"]
    lines += [f"| {p['eps']:g} | {pct(p['certified_accuracy'])} | {pct(p['robust_accuracy'])} | {p['falsified']} | "
              f"{'yes' if p['certified_attacked'] else 'no (proven safe)'} |" for p in s["curve"]]
    lines += ["", "![certified and robust accuracy against ε](accuracy_vs_eps.png)", "",
              f"## Falsified samples at ε = {s['eps']} ({s['falsified']})", "",
              "Every witness is a float32 input within ε (exact check) inside the domain that onnxruntime "
              "misclassifies; the full witnesses are in the witness file.", ""]
    if s["falsified_samples"]:
        lines += ["| index | label | ORT prediction | ‖x′ − x‖∞ | witness sha256 |", "|---|---|---|---|---|"]
        lines += [f"| {f['index']} | {f['label']} | {f['adv_predicted']} | {f['witness_distance']:.6g} | "
                  f"`{str(f['witness_sha256'])[:16]}…` |" for f in s["falsified_samples"][:50]]
        if len(s["falsified_samples"]) > 50:
            lines.append(f"| … {len(s['falsified_samples']) - 50} more | | | | |")
    lines += ["", f"Soundness alarm: **{s['soundness_alarm']}** (no sample is both certified and falsified).", ""]
    return "\n".join(lines)


def plot_curve(s: dict, path: Path) -> None:
    """accuracy_vs_eps.png: certified and PGD-robust accuracy against ε (clean as a reference)."""
    import matplotlib.pyplot as plt

    fig = curve_figure(s)
    try:
        with atomic_file(path, "wb") as f:
            fig.savefig(f, dpi=100, format="png")
    finally:
        plt.close(fig)


def curve_figure(s: dict):
    """The matplotlib figure of :func:`plot_curve` (every line in the legend; the title names the
    model, the data set and n)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [p["eps"] for p in s["curve"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(eps, [100 * p["robust_accuracy"] for p in s["curve"]], "o--", ms=9, mfc="none", label="PGD robust (upper bound)")
    ax.plot(eps, [100 * p["certified_accuracy"] for p in s["curve"]], "s-", label="certified (sound)")
    ax.axhline(100 * s["clean_accuracy"], color="gray", ls="--", lw=1, label="clean")
    ax.axvline(s["eps"], color="k", ls=":", lw=1, label=f"audited ε = {s['eps']:g}")
    ax.set_xlabel("ε (ℓ∞, input units)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{Path(s['model']).name} on {Path(str(s['data'])).name}: n = {s['n']}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def write_report(s: dict, out_dir: Path) -> None:
    """report.md and accuracy_vs_eps.png in ``out_dir``."""
    with atomic_file(out_dir / "report.md") as f:
        f.write(markdown(s))
    plot_curve(s, out_dir / "accuracy_vs_eps.png")
