"""Sound bounds beyond a single op: outward rounding (rounding.py), certified margins and radii
(margins.py), the fast interval pass for pure ℓ∞-dist chains (fastibp.py, fastpath.py), and linear
bound propagation (CROWN, α-CROWN) over the verifier's Graph (docs/SOUNDNESS.md, "Linear bounds"):
crown.py (the engine: boxes, back-substitution), linear.py (error-charged float64 arithmetic),
alpha.py (optimised slopes), spec.py (label margins for certify, C·y − d and the CROWN → α-CROWN
ladder for vnnlib). Relaxations shared by several ops: relu.py (Relu, LeakyRelu), sums.py (Add, Sub),
moves.py (value-moving ops), linf.py (ℓ∞-dist). Each op's own interval, Lipschitz and ``relax``
rules live in its file in verify/ops/."""
