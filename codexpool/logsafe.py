"""Log lines that client text cannot forge: control characters are written as escapes.

Usernames, paths, user agents and error messages reach the log from clients; a newline in a
sign-in name used to start a second, forged line (`INFO codexpool.audit: admin admin.login`).
The formatter escapes every C0/C1 control character and the Unicode line separators in the
message (a traceback, appended after it, keeps its lines).
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """Return `text` with control characters as backslash escapes (`\\n`, `\\x1b`)."""
    # Every character the pattern matches is non-printable, so a printable line (nearly
    # every one) is returned as is: half the regex scan's cost on an access line.
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)


class EscapingFormatter(logging.Formatter):
    """A Formatter whose messages never span lines or carry terminal escapes."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """Format the record with its message's control characters escaped."""
        record.message = escape_controls(record.message)
        return super().formatMessage(record)
