"""The torch side of the model layer: the PLANT network (`model.nn.network`) and its ONNX export
(`model.nn.export`). Only training imports this package; the runtime beside it never does (an
import-linter contract in pyproject.toml enforces it)."""
