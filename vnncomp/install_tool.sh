#!/bin/bash
# VNN-COMP tool script, version v1: install_tool.sh v1 — installs this repository's package and its
# dependencies (pyproject.toml) into the current Python environment.
set -eu
if [ "${1:-}" != "v1" ]; then echo "expected first argument (version string) 'v1', got '${1:-}'" >&2; exit 1; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"${PYTHON:-python3}" -m pip install -e "$REPO"
