"""The exception hierarchy every memlab module raises from.

Like ccxt's, it separates "try again" from "you are wrong": an error whose
``retryable`` is true is worth retrying; the others need a person to fix something.
"""

from __future__ import annotations


class MemlabError(Exception):
    """Base of every error memlab raises on purpose."""

    retryable: bool = False


class InvalidInputError(MemlabError, ValueError):
    """The caller passed something memlab cannot use; the message says what."""


class ConfigurationError(MemlabError):
    """A setting (environment variable, file, flag) is missing or wrong."""
