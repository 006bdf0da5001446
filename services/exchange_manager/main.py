"""``python -m services.exchange_manager``: connectors, the order book of record and the pre-trade risk gate.

Top to bottom: load settings, bind sockets, follow the session from the orchestrator (fail
closed: the gate passes no order until it has heard that the session is LIVE), serve commands, heartbeat.
"""

from __future__ import annotations

from typing import Any

from services.exchange_manager.handlers import build_handlers
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.session_follower import SessionFollower
from services.settings import Settings


class ExchangeManager:
    def __init__(self, settings: Settings) -> None:
        self.runtime = ServiceRuntime("exchange_manager", settings, stats=self.stats,
                                      state=lambda: self.session.state,
                                      trading_enabled=lambda: self.session.trading_allowed())
        self.session = SessionFollower(self.runtime, settings.exchange_manager.deadman_timeout_s)
        self.runtime.add_handlers(build_handlers(self.session))

    def stats(self) -> dict[str, Any]:
        return self.session.summary()

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("exchange_manager")
    configure_logging()
    ExchangeManager(settings).run()
