"""Who may use the app: local-only by default, or a classroom with host and student codes.

Imports: every layer below (core to views).
"""
