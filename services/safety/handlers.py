"""The safety process's commands (besides ``status``, which every service answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bus.command_server import Handler

if TYPE_CHECKING:
    from services.safety.main import Safety


def build_handlers(safety: "Safety") -> dict[str, Handler]:
    return {}
