"""What is kept: the SQLite store, saved documents (runs, sweeps, load tests), imports of outside files, the ledger of estimate against measurement, exports and the sweep table.

Imports: every layer below (core to measure).
"""
