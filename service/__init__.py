"""The scoring service: FastAPI + ONNX Runtime + a Redis (or in-process) user-state cache.

Never imports torch or ``model/`` (a test checks it): it reads only the exported artifact.
"""
