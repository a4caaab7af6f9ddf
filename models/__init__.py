"""The model suite (graph-only ONNX files), the tiny test CNN, and their builder."""
