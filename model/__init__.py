"""Shared model layer: code formats, the catalogue, tokenizer, network, bundle and ONNX runtime.

Everything here except `model.network` and `model.export` runs without torch, so the service can
import it.
"""
