"""One log record, one line: whatever a value holds, nothing written to a text log can start a line
of its own, so nothing a peer or an operator sends can forge a log record.

Values that reach log lines come from outside (a symbol, a reason, a strategy name, an exception
message quoting them), so every text log escapes at the point where the line is made:
``EscapingFormatter`` for every ``logging`` handler (each program's log through
``services.runtime.configure_logging``, the orchestrator's four session logs), ``escape`` for the
files written by hand (the event listener's ``process_alerts.log``, the incident and end-of-day
Markdown reports), ``json_line`` for the JSON lines.

Every character that ``str.isprintable`` refuses (C0 and C1 controls, DEL, line and paragraph
separators, format characters such as bidirectional overrides, unassigned code points) is written
as its Python escape (``\\n``, ``\\x1b``, ``\\u2028``), so the line stays one line for ``grep``, for
``str.splitlines`` and for a terminal. A traceback becomes part of its record's one line, its line
breaks written as ``\\n``: indenting continuation lines would still let a value inside a traceback
start a line. Backslashes are left as they are: escaping them would double every Windows path and
``repr`` in the logs; the point here is that no line can be forged, not that escaping is reversible.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec

# JSON as the session logs, the alerts and the sniffer write it: msgspec (compact, and several
# times faster than ``json``); what it cannot encode itself (a Path, an exception) is written as text.
JSON = msgspec.json.Encoder(enc_hook=str)


def _escape_char(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii") if ch != " " else ch


def escape(text: str) -> str:
    """``text`` with every non-printable character escaped: one line, no control sequence."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def md_cell(text: str) -> str:
    """``escape`` for a Markdown table cell: a ``|`` would also start a new cell."""
    return escape(text).replace("|", "\\|")


def json_line(record: Any) -> str:
    """``record`` as one JSON line. Non-ASCII text stays readable; but JSON leaves some line breaks
    unescaped (U+2028, U+2029, U+0085, which ``str.splitlines`` and JavaScript split on), so every
    non-printable character is written as its JSON escape (``\\u2028``). Outside its strings a JSON
    text holds only printable ASCII, so the escapes land inside strings and the line stays JSON."""
    try:
        line = JSON.encode(record).decode()
    except UnicodeEncodeError:  # a lone surrogate (a name read with surrogateescape): UTF-8 has none
        line = json.dumps(record, default=str)  # all ASCII, the surrogate as its escape
    return line if line.isprintable() else "".join(ch if ch.isprintable() else _json_escape(ch) for ch in line)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: a UTF-16 surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class EscapingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose every record is one line: the message, the exception text and
    the stack, each escaped (``escape``) after formatting."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))
