"""Live measurement: the backends (one per software stack), the timing engine, the worker process, the server-wide model cache, the runner that takes one RunSpec to a Measurement, and sweeps with their time budget.

Imports: lib.core, lib.machine, lib.models, lib.estimate, lib.serving.
"""
