"""Words every layer shares: errors, plain text, paths, metric names and units, timing, prompts, the run settings (RunSpec) with the software stacks and number formats (one Format record each), model kinds, a run's results, their statistics and the saved-document schema.

Imports: nothing from lib (the standard library only; torch only inside functions).
"""
