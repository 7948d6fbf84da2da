"""Exceptions the engine raises on purpose.

Each message is written for the person at the screen: it says what is wrong and what to do
instead. The web app catches `ExplorerError` in one place and shows the message; the CLI prints it
on one line and exits non-zero. Anything else escaping the engine is a bug.
"""


class ExplorerError(Exception):
    """Base class: a problem the user can fix by changing their settings or their machine.

    The message suits every screen, so it never asks for a terminal command; where one helps,
    `cli_hint` holds it, and the CLI alone prints it after the message."""

    cli_hint: str | None = None


class InvalidSpecError(ExplorerError, ValueError):
    """A setting is out of range or inconsistent with another one."""


class UnsupportedError(ExplorerError):
    """The chosen device cannot run the chosen combination (missing device, dtype it can't do)."""


class MemoryGuardError(ExplorerError):
    """The run would not fit in the memory that is free right now; refused before allocating."""


class ModelLoadError(ExplorerError):
    """The model's files could not be found or read."""


class RunFailedError(ExplorerError):
    """The model raised while running (e.g. PyTorch ran out of memory); nothing else is affected."""


class StoppedError(ExplorerError):
    """The person pressed Stop: the run ended early on purpose and nothing of it was kept."""


RUN_STOPPED = ("Stopped: the run was ended before it finished, so nothing of it was kept. "
               "Press Run to measure again.")


def stop_if_asked(should_stop) -> None:
    """Raise StoppedError (RUN_STOPPED) once `should_stop()` says the person pressed Stop: what
    the engine checks between calls and a backend between tokens."""
    if should_stop():
        raise StoppedError(RUN_STOPPED)


class WorkerDiedError(ExplorerError):
    """The process that held the model ended (killed for memory, or crashed); the app is fine."""


class QueueError(ExplorerError):
    """The measurement queue's folder can't be used safely (`lib.core.paths.runtime_dir`)."""


class ServingError(ExplorerError):
    """A server to measure can't be used as given: a bad address, nothing answering, a refused
    key, a model it doesn't offer (`lib.serving.client`)."""
