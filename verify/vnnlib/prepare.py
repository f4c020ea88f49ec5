"""``python -m verify.vnnlib.prepare MODEL.onnx PROPERTY.vnnlib``: VNN-COMP's prepare step.

Loads the model and the property and checks that they fit; exit 0, or one line and exit 2."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from common.errors import LinfVerifyError
    from verify.front.model import load_model
    from verify.vnnlib.run import check_fit
    from verify.vnnlib.spec import read_property

    if len(argv) != 2:
        print("usage: python -m verify.vnnlib.prepare MODEL.onnx PROPERTY.vnnlib", file=sys.stderr)
        return 2
    try:
        check_fit(load_model(argv[0]), read_property(argv[1]))
    except (LinfVerifyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
