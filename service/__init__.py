"""The FastAPI coding service (ONNX Runtime only; never imports torch)."""
