"""ONNX export of a trained run into a versioned serving artifact.

``export.manifest`` and ``export.contract`` are torch-free (the service reads them);
``export.onnx``, ``export.ctr``, ``export.graph`` and ``export.fused`` need torch.
"""
