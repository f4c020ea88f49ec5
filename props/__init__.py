"""props: property-based Lipschitz checks for layers, convex ensembles and any exported model.

- `props.lipschitz`: `search_lipschitz`, `check_lipschitz`, `LipschitzViolation`, `replay`;
- `props.strategies`: Hypothesis strategies (ℓ∞-dist layers, nets, ensembles, input boxes/pairs);
- `props.pytest_plugin`: the `assert_lipschitz` fixture (registered as the pytest11 entry point).
Heavy modules are imported lazily: `import props` costs nothing.
"""

from __future__ import annotations

__all__ = ["check_lipschitz", "search_lipschitz", "LipschitzViolation", "LipschitzSearchResult", "replay"]


def __getattr__(name):
    if name in __all__:
        from props import lipschitz
        return getattr(lipschitz, name)
    raise AttributeError(f"module 'props' has no attribute {name!r}")
