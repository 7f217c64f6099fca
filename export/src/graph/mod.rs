//! ONNX graph builder (in progress).
