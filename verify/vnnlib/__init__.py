"""VNN-LIB properties and the VNN-COMP contract: spec (parse 1.0), prove (method ladder),
falsify (APGD + onnxruntime replay), run (one instance, results file). See each module."""
