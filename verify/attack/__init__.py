"""verify.attack: falsification of ONNX models with witnesses replayed in onnxruntime.

Public API (each module's docstring states its guarantees):
- verify.attack.torch_graph.TorchGraph: differentiable torch evaluation of the verifier's IR (load_model)
  (exact ℓ∞-dist forward; ``p_grad`` picks the exact or the smoothed ℓp surrogate gradient)
- verify.attack.pgd: AttackConfig, apgd (APGD with CE / DLR / targeted DLR, step halving)
- verify.attack.box: linf_box (float32 box exactly inside the ε-ball ∩ domain), inside_box
- verify.attack.replay: OrtReplayer.confirm (the judge), witness records, atomic JSONL writer
- verify.attack.runner: attack_arrays -> AttackResult (summary, records)
- verify.attack.alarm: find_conflicts, check_consistency (SoundnessAlarm, exit 3)
- verify.attack.api: run_attack (the `attack` command), alarm_against
Nothing here is a proof of robustness: ``unknown`` means the attack found no witness.
"""
