"""Linear bound propagation (CROWN, α-CROWN) over the verifier's Graph: verify/bounds/crown.py
(the engine), linear.py (error-bounded float64 arithmetic), moves.py (value-moving ops), alpha.py
(optimised slopes), spec.py (label margins and C·y − d for certify and vnnlib). Each op's own
relaxation is its ``relax`` method in verify/ops/op_<name>.py."""
