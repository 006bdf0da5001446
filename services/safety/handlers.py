"""The safety process's commands (besides ``status``, which every service answers). Their requests
and results are declared in ``proto/commands/registry.py`` and written out in docs/protocol.md."""

from __future__ import annotations

import proto

from typing import TYPE_CHECKING, Any

from bus.command_server import Handler
from proto.commands import NoArgs, ReasonArgs

if TYPE_CHECKING:
    from services.safety.main import Safety


def build_handlers(safety: "Safety") -> dict[str, Handler]:
    def reset(_: ReasonArgs) -> dict[str, Any]:
        """``reset``: forget every cool-down, so the next incident is reported afresh; what still
        holds is reported again at once (a reset never hides a condition). Sent by the orchestrator
        when the session recovers from DEGRADED (``tradectl recover``).

        Wire: ``Command(name="reset", args={"reason": str})`` → ``ok(events, holding, published)``:
        ``published`` is the sequence number of its last event on ``safety`` before the reset, so
        an event still on its way then is known for one raised before it (not a new incident).
        """
        safety.reset()
        return {"events": dict(safety.monitor.counts), "holding": safety.conditions(),
                "published": safety.runtime.publisher.last_seq(proto.topics.SAFETY)}

    def conditions(_: NoArgs) -> dict[str, Any]:
        """``conditions``: every detector's condition that holds now (the heartbeat's ``holding``;
        ``since`` is session time). CLI: ``tradectl safety status``."""
        clock = safety.monitor.clock
        return {"holding": safety.conditions(), "clock": clock.mode,
                "session_time": clock.now() if clock.started else None}

    return {"reset": reset, "conditions": conditions}
