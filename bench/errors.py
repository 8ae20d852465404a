"""User-facing errors.

Every problem a user can cause (a bad file, an unknown name, an unwritable folder) is raised as a
:class:`BenchError` whose message is one line naming the file, record or option and what is wrong.
The CLI prints that line and exits with the error's ``exit_code``; nothing else is shown, so users
never see a bare traceback for their own mistakes.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UsageError(BenchError):
    """A bad command line: unknown option value, unknown name. Exit code 2, like argparse."""

    exit_code = 2


class InputError(BenchError):
    """A file the user gave (task, SAE, world, results dir) that cannot be used. Exit code 2."""

    exit_code = 2


class TaskFileError(InputError):
    """A task file that cannot be used: names file, record number and problem."""


class MethodFailure(Exception):
    """A method misbehaved (bad scores, exception). Recorded as an error cell, never fatal."""


def did_you_mean(name: str, choices: Iterable[str], what: str) -> str:
    """The standard message for an unknown name: close matches first, then everything known."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}.{hint} Known: {', '.join(choices) or '(none)'}."
