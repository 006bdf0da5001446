"""The engine's commands (besides ``status``, which every service answers)."""

from __future__ import annotations

from bus.command_server import Handler
from services.session_follower import SessionFollower, trading_handlers


def build_handlers(session: SessionFollower) -> dict[str, Handler]:
    return trading_handlers(session)
