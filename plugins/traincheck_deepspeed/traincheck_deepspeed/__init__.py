"""traincheck adapter for DeepSpeed. Early: it reports DeepSpeed's version in trace headers;
engine instrumentation is not written yet (the PyTorch adapter traces the model underneath)."""
