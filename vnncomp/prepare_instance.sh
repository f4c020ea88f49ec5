#!/bin/bash
# VNN-COMP tool script, version v1: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE
# Checks that the model and the property load and fit (nothing is cached: run_instance.sh reads both
# again). Exit 0 when the instance can be run, non-zero (with one line on stderr) otherwise.
set -u
if [ "${1:-}" != "v1" ]; then echo "expected first argument (version string) 'v1', got '${1:-}'" >&2; exit 1; fi
if [ "$#" -ne 4 ]; then echo "usage: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE" >&2; exit 1; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "${PYTHON:-python3}" -m verify.vnnlib.prepare "$3" "$4"
