"""Collect the rows written by benchmarks/reproduce_seed000.sh into the markdown table of
docs/RESULTS.md (report 000's layout: PARAMs, clean, PGD-robust, certified by `certify`).

    python3 benchmarks/seed000_table.py OUT [OUT ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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


def _clean(ce: dict | None) -> str:
    return f"{100 * ce['clean_accuracy']:.1f} %" if ce else "not run"


def main(outs: list[str]) -> None:
    print("| row | PARAMs | train s | clean (certify) | PGD-robust (n) | certified (n) |")
    print("|---|---|---|---|---|---|")
    for out in map(Path, outs):
        for tj in sorted(out.glob("*.train.json")):
            name = tj.name[: -len(".train.json")]
            tr, ce, at = _load(tj), _load(out / f"{name}.certify.json"), _load(out / f"{name}.attack.json")
            pct = lambda d, k: f"{100 * d[k]:.1f} % ({d['n']})" if d else "not run"  # noqa: E731
            print(f"| {name} | {_params(out / name)} | {tr['train_seconds'] if tr else '?'} | "
                  f"{_clean(ce)} | "
                  f"{pct(at, 'robust_accuracy')} | {pct(ce, 'certified_accuracy')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
