"""Export of the retrieval embedder (ONNX) and its onnxruntime runner."""

from cvd.export.onnx import ExportError, ExportReport, export_onnx
from cvd.export.runtime import OnnxEmbedder, onnx_metadata

__all__ = ["ExportError", "ExportReport", "OnnxEmbedder", "export_onnx", "onnx_metadata"]
