"""``python -m services.orchestrator``: load settings, run the session until SIGTERM."""

from __future__ import annotations

from services.orchestrator.orchestrator import LiveTradingOrchestrator
from services.runtime import configure_logging, load_settings_or_exit


def main() -> None:
    settings = load_settings_or_exit("orchestrator")
    configure_logging(settings.logs)
    LiveTradingOrchestrator(settings).run()
