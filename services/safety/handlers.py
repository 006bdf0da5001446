"""The safety process's commands (besides ``status``, which every service answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bus.command_server import Handler
from proto.commands import ReasonArgs

if TYPE_CHECKING:
    from services.safety.main import Safety


def build_handlers(safety: "Safety") -> dict[str, Handler]:
    def reset(_: ReasonArgs) -> dict[str, Any]:
        """``reset``: forget every open incident, window and cool-down.

        Wire: ``Command(name="reset", args={"reason": str})`` → ``ok(events={detector: count})``. Sent by the orchestrator
        when an operator recovers from DEGRADED (``tradectl recover``).
        """
        safety.reset()
        return {"events": dict(safety.counts)}

    return {"reset": reset}
