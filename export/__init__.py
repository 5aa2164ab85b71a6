"""ONNX export of a trained run into a versioned serving artifact.

``export.manifest`` is torch-free (the service reads it); ``export.onnx`` needs torch.
"""
