"""``python -m services.orchestrator``: load settings, run the session until SIGTERM."""

from __future__ import annotations

from services.orchestrator.market_calendar import UnknownCalendar
from services.orchestrator.orchestrator import LiveTradingOrchestrator
from services.runtime import configure_logging, exit_bad_settings, load_settings_or_exit


def main() -> None:
    settings = load_settings_or_exit("orchestrator")
    configure_logging(settings.logs)
    try:
        orchestrator = LiveTradingOrchestrator(settings)
    except UnknownCalendar as exc:  # only the orchestrator loads the calendars (with pandas)
        exit_bad_settings("orchestrator", [str(exc)])
    orchestrator.run()
