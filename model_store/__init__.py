"""The model repository format: export to a Triton repository (`export`), the manifest schema (`manifest`),
`config.pbtxt` generation (`model_config`), `ufo store verify` (`verify`), the CPU fallback Triton backend
(`backends/onnxruntime/model.py`) and a tritonserver launcher (`triton`). Imports nothing heavy itself."""
