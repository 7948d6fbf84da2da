"""What this machine is and can do: its devices, its software environment, the other programs' share of the CPU, its measured ceilings (bandwidth, FLOP/s, per-layer overhead) kept as quiet capabilities, the peak memory a run used, and the one-run-at-a-time lock.

Imports: lib.core.
"""
