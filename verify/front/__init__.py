"""The front-end: one ONNX file -> one verified graph.

loader.py (safe read, model identity, local functions) -> model.py (bind every node to its op in
verify/ops/, fold exact constants, dry run; ``load_model``) with graph.py (the IR: evaluate,
propagate boxes, Lipschitz table), fuse.py (standard-op ℓ∞-dist patterns -> linf::LinfDist) and
batch_axis.py (static proof that samples of a batch stay apart).
"""
