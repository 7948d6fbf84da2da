"""Models: what they are (catalog), their shapes before loading and the bytes they take (shapes), where their files come
from (files, hub, gguf, gguf_formats with gguf_build, onnx_build, saved) and how transformers loads them (loading).

Nothing here times a request or starts a process; backends (lib.measure.backends) load through
this package and measure.

Imports: lib.core, lib.machine.
"""
