"""Models: what they are (catalog), their shapes before loading (shapes), how transformers loads
their weights (loading, gguf, hub), and the server-wide cache of loaded models (cache).

Nothing here times a request; backends (lib.backends) load through this package and measure.
"""
