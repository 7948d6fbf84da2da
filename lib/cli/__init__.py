"""The command line, `python -m lib`: the argument parser (flags generated from RunSpec and the load plan) and its commands.

Imports: every layer below. Never lib.ui.
"""
