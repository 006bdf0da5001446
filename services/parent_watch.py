"""Whether supervisord, the parent that started this process, is still there.

supervisord puts ``SUPERVISOR_ENABLED=1`` (with ``SUPERVISOR_PROCESS_NAME``,
``SUPERVISOR_GROUP_NAME`` and ``SUPERVISOR_SERVER_URL``) in the environment of every program it
starts. When supervisord dies (kill -9, the OOM killer) its children live on, re-parented to init
or the nearest subreaper: their parent pid changes, which is what this watch looks at, on a cheap
timer (one ``getppid()`` per heartbeat). From then on nothing restarts the process if it dies and
nothing stops it on ``supervisorctl shutdown``: the process fails closed (the trading processes
stop opening positions) and says so once, loudly.

Without ``SUPERVISOR_ENABLED`` (tests, tools, a service run by hand) the watch is off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

ENV_ENABLED = "SUPERVISOR_ENABLED"
ENV_PROGRAM = "SUPERVISOR_PROCESS_NAME"
ENV_GROUP = "SUPERVISOR_GROUP_NAME"


def supervised(environ: Mapping[str, str]) -> bool:
    """Started by supervisord (which sets ``SUPERVISOR_ENABLED=1`` for its programs)."""
    return environ.get(ENV_ENABLED) == "1"


class ParentWatch:
    """Call ``check()`` periodically; once the parent has changed, every ``on_lost`` callback is
    called once with the reason (one registered later is called at once)."""

    def __init__(self, environ: Mapping[str, str], getppid: Callable[[], int] = os.getppid) -> None:
        self.enabled = supervised(environ)
        self.program = environ.get(ENV_PROGRAM, "")
        self.group = environ.get(ENV_GROUP, "")
        self._getppid = getppid
        self.parent: int | None = getppid() if self.enabled else None
        self.lost: str | None = None
        self._callbacks: list[Callable[[str], None]] = []

    def on_lost(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)
        if self.lost is not None:
            self._call(callback, self.lost)

    def check(self) -> bool:
        """True once supervisord is known to be gone."""
        if not self.enabled or self.lost is not None:
            return self.lost is not None
        now = self._getppid()
        if now == self.parent:
            return False
        self.lost = (f"supervisord (pid {self.parent}, this process's parent) is gone, the parent is now pid {now}: "
                     f"nothing restarts this process if it dies")
        for callback in list(self._callbacks):
            self._call(callback, self.lost)
        return True

    @staticmethod
    def _call(callback: Callable[[str], None], reason: str) -> None:
        try:
            callback(reason)
        except Exception:  # one failing reaction must not keep the others from running
            log.exception("reaction to the loss of supervisord failed")
