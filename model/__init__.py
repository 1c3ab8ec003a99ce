"""The model layer: code formats, the catalogue, tokenizer, bundle contract, ONNX runtime and the
fusion around it, all without torch, so the service imports it; the torch network and its export
live in the `model.nn` subpackage, which only training imports (enforced by the import contracts
in pyproject.toml).
"""
