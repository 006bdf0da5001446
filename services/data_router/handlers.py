"""The data router's commands (besides ``status``, which every service answers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bus.command_server import Handler

if TYPE_CHECKING:
    from services.data_router.main import DataRouter


def build_handlers(router: "DataRouter") -> dict[str, Handler]:
    return {}
