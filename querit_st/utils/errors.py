"""The package's one error type for bad input, and one-line messages."""

from __future__ import annotations


class QueritInputError(ValueError):
    """Bad input to a public entry point. The CLI turns it into exit code 2."""


def one_line(message: object) -> str:
    """An error message on one line (a YAML parser's, say, spans several): whitespace runs become one space."""
    return " ".join(str(message).split())
