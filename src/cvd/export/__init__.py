"""Export of the retrieval embedder (ONNX). Its onnxruntime runner is `cvd.geo.onnx_embedder`
(re-exported here), since localization runs it."""

from cvd.export.onnx import ExportError, ExportReport, export_onnx
from cvd.geo.onnx_embedder import OnnxEmbedder, onnx_metadata

__all__ = ["ExportError", "ExportReport", "OnnxEmbedder", "export_onnx", "onnx_metadata"]
