"""``python -m services.safety``: anomaly detectors over market data, orders and fills."""

from __future__ import annotations

from typing import Any

from services.safety.handlers import build_handlers
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.settings import Settings


class Safety:
    def __init__(self, settings: Settings) -> None:
        self.runtime = ServiceRuntime("safety", settings, stats=self.stats)
        self.runtime.add_handlers(build_handlers(self))

    def stats(self) -> dict[str, Any]:
        return {}

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("safety")
    configure_logging()
    Safety(settings).run()
