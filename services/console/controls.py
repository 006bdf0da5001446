"""The console's controls: each is one orchestrator command, sent as the logged-in user's own bus
identity (her CURVE key) through the same command path as ``tradectl``, so the orchestrator checks
her rights and writes her name in the governance log. The console refuses a reader first (the page
disables the buttons too), and the orchestrator would refuse her key anyway.

======== ============================================ ==================================
control  wire request (``proto/commands``)           as ``tradectl`` run as the user
======== ============================================ ==================================
open     ``Command(name="open", args={reason})``      ``tradectl open``
close    ``Command(name="close", args={reason})``     ``tradectl close``
recover  ``Command(name="recover")``                  ``tradectl recover``
failsafe ``Command(name="failsafe", args={reason})``  ``tradectl failsafe --reason TEXT``
reset    ``Command(name="reset", args={reason})``     ``tradectl reset``
======== ============================================ ==================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

import proto
from bus import CommandClient, CommandRefused, CommandTimeout, Endpoints, MissingKey, security
from bus.settings import BusSettings
from proto import commands as rq

MAX_REASON = 500

# name -> (what the confirmation says it does, the request built from the operator's reason)
CONTROLS: dict[str, tuple[str, Callable[[str], proto.Args]]] = {
    "open": ("Open the market: READY → LIVE; the strategies start trading.", lambda reason: rq.Open(reason=reason)),
    "close": ("Close the market: flatten, end the session (SHUTDOWN), write the end-of-day report.",
              lambda reason: rq.Close(reason=reason)),
    "recover": ("Recover: DEGRADED → LIVE if every process is healthy.", lambda reason: rq.Recover()),
    "failsafe": ("FAILSAFE: stop trading everywhere, cancel every order, flatten every position.",
                 lambda reason: rq.Failsafe(reason=reason)),
    "reset": ("Reset: FAILSAFE → READY once the venue is verified flat; then open again.",
              lambda reason: rq.Reset(reason=reason)),
}


class ControlRefused(Exception):
    """Not sent: the reason says why (a bad reason, no key for the user)."""


def send(ctx: zmq.Context, bus: BusSettings, run_dir: Path, keys_dir: Path, user: str, control: str, reason: str,
         timeout_s: float) -> dict[str, Any]:
    """Send ``control`` as ``user``; ``{"ok": True, "result", "state"}`` or ``{"ok": False, "error"}``
    (the orchestrator refused, or did not answer in ``timeout_s``). Blocking: call it off the loop."""
    if control not in CONTROLS:
        raise ControlRefused(f"no control {control!r}; there are: {', '.join(CONTROLS)}")
    reason = " ".join(reason.split())[:MAX_REASON]
    if control == "failsafe" and not reason:
        raise ControlRefused("failsafe needs a reason (it goes into the incident report)")
    request = CONTROLS[control][1](reason or f"operator {control} (console, {user})")
    try:
        sec = security(bus, keys_dir, user)
    except MissingKey as exc:
        raise ControlRefused(f"{user} has no usable key on this host: {exc}") from None
    client = CommandClient(ctx, Endpoints(bus, run_dir).cmd("orchestrator"), bus, user, service="orchestrator",
                           security=sec, timeout_s=timeout_s, retries=0)
    try:
        result = proto.to_builtins(client.request(request))
    except CommandRefused as exc:
        return {"ok": False, "error": str(exc)}
    except CommandTimeout:
        return {"ok": False, "error": f"the orchestrator did not answer {control} within {timeout_s:g} s; "
                                      f"see the state above and the governance log"}
    finally:
        client.close()
    return {"ok": True, "result": result, "state": result.get("state") if isinstance(result, dict) else None}
