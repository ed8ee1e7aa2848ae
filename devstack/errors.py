"""The one exception of the stack (its own module so every other module can raise it)."""

from __future__ import annotations


class StackError(Exception):
    """A stack operation failed; the message is one line, fit to show a user."""
