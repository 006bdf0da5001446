"""Orchestrator settings (section ``[orchestrator]``, env ``TRADING_ORCHESTRATOR__<FIELD>``)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ScheduleSettings(BaseModel):
    """When the market is open. ``always_open`` (the default) opens at start-up and never closes."""

    model_config = ConfigDict(extra="forbid")

    always_open: bool = True
    timezone: str = "UTC"
    open: dt.time = dt.time(9, 30)
    close: dt.time = dt.time(16, 0)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def is_open(self, now: dt.datetime) -> bool:
        if self.always_open:
            return True
        local = now.astimezone(zoneinfo.ZoneInfo(self.timezone))
        return local.weekday() in self.weekdays and self.open <= local.time() < self.close


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds between overall health assessments (faster while DEGRADED).
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # Degradations within ``degradation_window_s`` that escalate to FAILSAFE.
    failsafe_degradation_count: int = Field(default=3, ge=1)
    degradation_window_s: float = Field(default=3600.0, gt=0)
    # The market-open signal at start-up: open as soon as every process is heard from (READY).
    # Applies at start-up only; after a reset the session waits for an explicit ``tradectl open``.
    auto_open: bool = True
    schedule: ScheduleSettings = ScheduleSettings()
    # At market close: flatten every position before the session ends.
    close_flatten: bool = True
    close_flatten_timeout_s: float = Field(default=5.0, gt=0)
    # Commands the orchestrator sends to the other services (enable/disable trading, ...).
    command_timeout_s: float = Field(default=0.5, gt=0)
    command_retries: int = Field(default=3, ge=0)
    journal_file: str = "orchestrator.sqlite"
