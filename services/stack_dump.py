"""``kill -USR1 PID`` prints every thread's stack of a service on its stderr (its supervisord log).

For the operator facing a process that is up but does not answer (hung in a call, starved, stuck in
start-up): what it is doing, without stopping it. Enabled first thing in each service's
``__main__``, before the imports, so a process stuck while importing answers too.
"""

from __future__ import annotations

import faulthandler
import signal


def enable() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)
