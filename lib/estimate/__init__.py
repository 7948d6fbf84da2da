"""Numbers computed rather than measured, always labelled as estimates: memory need and verdicts, the roofline, hardware profiles, the step-time estimator (with its calibration, device memory and assumptions in words), the floors under a measured run, the gap to them, the model card and the why of a number.

Imports: lib.core, lib.machine, lib.models.
"""
