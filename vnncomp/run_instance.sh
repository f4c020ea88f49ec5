#!/bin/bash
# VNN-COMP tool script, version v1: run_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT
# Writes RESULTS_FILE (atomically): unsat | sat + witness ((X_0 v) ... (Y_0 v) ...) | unknown | timeout.
# A model or property this tool cannot read gets one error line on stderr, no RESULTS_FILE (an
# existing one is left as it was) and exit 2. CATEGORY is not used: every benchmark runs the same
# code path.
set -u
if [ "${1:-}" != "v1" ]; then echo "expected first argument (version string) 'v1', got '${1:-}'" >&2; exit 1; fi
if [ "$#" -ne 6 ]; then echo "usage: run_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE RESULTS_FILE TIMEOUT" >&2; exit 1; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" "$REPO/verify_cli.py" vnnlib "$3" "$4" --out "$5" --timeout "$6"
