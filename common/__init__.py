"""The shared ground of nets/, export/, verify/ and props/; imports nothing else of ours.

errors.py (the exception classes and their exit codes), datasets.py (raw readers of the data sets),
linf_spec.py (the linf ONNX domain: canonical function bodies), runtime.py (the ONE onnxruntime
session configuration theorem (b) is about), outputs.py (safe output files: atomic, locked, never
an input).
"""
