"""Sound bounds beyond a single op: outward rounding (rounding.py), certified margins and radii
(margins.py), the fast interval pass for pure ℓ∞-dist chains (fastibp.py, fastpath.py). Each op's
own interval and Lipschitz rule lives in its file in verify/ops/."""
