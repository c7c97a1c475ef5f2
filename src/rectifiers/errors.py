"""The one exception type for a user's mistake or bad data, and how commands report it.

Every command (``rectifiers train|eval|export|reproduce|bench``) ends a user error with one
message that names the problem and the fix, and exit code 2; a traceback is shown only with
``--debug`` (or ``RECTIFIERS_DEBUG=1``). Library code raises :class:`UserError` (or a subclass:
``DatasetError``, ``CheckpointError``, ``ConfigError``, ...) for anything the user can fix; every
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os

__all__ = ["UserError", "ConfigError", "debug_enabled", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix (bad flag, bad file, missing data); ``str()`` says how."""


class ConfigError(UserError, ValueError):
    """An invalid setting (a flag value, a model keyword, a config field)."""


def debug_enabled(argv: list[str] | None = None) -> bool:
    """``--debug`` on the command line or ``RECTIFIERS_DEBUG`` set to a non-empty, non-0 value."""
    if argv is not None and "--debug" in argv:
        return True
    return os.environ.get("RECTIFIERS_DEBUG", "") not in ("", "0")
