"""The one error type of the wire protocol."""

from __future__ import annotations


class ProtocolError(Exception):
    """A frame that is not a valid message of this protocol.

    ``kind`` is a short, stable word (``malformed``, ``oversized``, ``too_large`` (over a limit of
    ``proto.limits``), ``version``, ``unknown_type``, ``invalid``) that callers use as a counter key;
    the message says what exactly was wrong.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
