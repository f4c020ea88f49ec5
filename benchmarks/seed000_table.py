"""Collect the rows written by benchmarks/reproduce_seed000.sh into the markdown table of
docs/RESULTS.md (report 000's layout: PARAMs, clean, PGD-robust, certified by `certify`).

    python3 benchmarks/seed000_table.py OUT [OUT ...]

Clean and certified come from `certify` on the exported ONNX file (sound); PGD-robust from `attack`
on the same samples (the certified ones are proven robust and not attacked: --skip-certified).
Optimizer, relaxation, members and epochs are read from each checkpoint's config.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _load(p: Path) -> dict | None:
    try:
        return json.loads(p.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _params(ckpt: Path) -> str:
    from nets.checkpoint import load_checkpoint
    from nets.models import count_params

    try:
        model, _ = load_checkpoint(ckpt)
    except Exception as e:  # noqa: BLE001 -- a missing row is shown, not fatal
        return f"? ({type(e).__name__})"
    return f"{count_params(model) / 1e6:.2f} M"


def _setup(ckpt: Path) -> str:
    try:
        t = json.loads((ckpt / "config.json").read_text())["train"]
    except (OSError, ValueError, KeyError):
        return "?"
    k = t.get("members", 1) or 1
    return (f"{t.get('optimizer', '?')} / {t.get('relaxation', '?')} / K = {k} / "
            f"{t.get('epochs', '?')} ep{' each' if k > 1 else ''}")


def _pct(d: dict | None, key: str) -> str:
    return f"{100 * d[key]:.1f} % ({d['n']})" if d else "not run"


def main(outs: list[str]) -> None:
    print("| row | optimizer / relaxation / members / epochs | PARAMs | train s | clean | PGD-robust (n) "
          "| certified (n) |")
    print("|---|---|---|---|---|---|---|")
    for out in map(Path, outs):
        for tj in sorted(out.glob("*.train.json")):
            name = tj.name[: -len(".train.json")]
            tr, ce, at = _load(tj), _load(out / f"{name}.certify.json"), _load(out / f"{name}.attack.json")
            clean = f"{100 * ce['clean_accuracy']:.1f} %" if ce else "not run"
            secs = f"{tr['train_seconds']:.0f}" if tr else "?"
            print(f"| {name} | {_setup(out / name)} | {_params(out / name)} | {secs} | {clean} | "
                  f"{_pct(at, 'robust_accuracy')} | {_pct(ce, 'certified_accuracy')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
