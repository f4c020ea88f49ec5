"""nets: ℓ∞-dist layers, models, ensembles and checkpoints (Zhang et al., ICML 2021).

Public API (see each module's docstring for the guarantees):
- nets.ops: lp_dist, lp_dist_conv, reference_lp_dist
- nets.layers: LinfDistLinear, LinfDistConv2d, ResidualLinfLinear, MeanShift, identity_init
- nets.config: ModelConfig (torch-free), validate_config; nets.archs: ARCHS (the architecture registry)
- nets.models: build_model, set_p, get_p, set_relaxation, set_backend, count_params, LinfDistNet
- nets.optim: make_optimizer (adam, adamw, madam), MAdam; nets.schedules: composable schedules
- nets.ensemble: ConvexEnsemble
- nets.checkpoint: save_checkpoint, load_checkpoint
"""
