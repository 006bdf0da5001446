"""``python -m services.data_router``: market-data feeds in, validated per-symbol topics out."""

from __future__ import annotations

from typing import Any

from services.data_router.handlers import build_handlers
from services.runtime import ServiceRuntime, configure_logging, load_settings_or_exit
from services.settings import Settings


class DataRouter:
    def __init__(self, settings: Settings) -> None:
        self.runtime = ServiceRuntime("data_router", settings, stats=self.stats)
        self.runtime.add_handlers(build_handlers(self))

    def stats(self) -> dict[str, Any]:
        return {}

    def run(self) -> None:
        self.runtime.run()


def main() -> None:
    settings = load_settings_or_exit("data_router")
    configure_logging()
    DataRouter(settings).run()
