"""Supervision settings (section ``[supervision]``, env ``TRADING_SUPERVISION__<FIELD>``): what
supervisord's event listener (``deploy/event_listener.py``) does beyond reporting."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SupervisionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A program whose pid lives but whose heartbeat has been silent this long is hung (stopped,
    # deadlocked, spinning outside its loop): the listener kills it (SIGKILL: a stopped process
    # never sees SIGTERM) and supervisord's autorestart brings it back. Null: never.
    hung_restart_after_s: float | None = Field(default=5.0, gt=0)
    # A process not heard from at all since it was spawned gets this long before it counts as hung
    # (six programs starting at once on a loaded 2-core machine take seconds to import).
    hung_start_grace_s: float = Field(default=30.0, gt=0)
