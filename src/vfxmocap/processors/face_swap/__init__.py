"""Face swap: engines (built-in geometric, inswapper ONNX), masks and the frame processor."""
