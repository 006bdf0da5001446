"""Orchestrator settings (section ``[orchestrator]``, env ``TRADING_ORCHESTRATOR__<FIELD>``)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.orchestrator.session_logs import part_bytes

# A session log part smaller than this would rotate every few lines.
MIN_LOG_PART_BYTES = 10_000


class ScheduleSettings(BaseModel):
    """When the market is open (``market_calendar.py`` answers from these). ``always_open`` (the
    default: the synthetic / crypto 24/7 session) opens at start-up and never closes; a ``calendar``
    takes the hours, holidays and early closes of an exchange; otherwise (``always_open = false``)
    the hand-written hours below."""

    model_config = ConfigDict(extra="forbid")

    always_open: bool = True
    # An exchange_calendars code or alias ("XNYS", "XLON", "CMES", ...): its sessions, holidays and
    # early closes decide (the hours below must then be left out). Checked when the orchestrator
    # starts (only it loads the library, with pandas): an unknown code exits 78 there.
    calendar: str | None = Field(default=None, min_length=1)
    # Hand-written hours, for a venue with no calendar: open..close local time in ``timezone`` on
    # ``weekdays``. open after close is an overnight session (futures, FX: 17:00 -> 16:00), which
    # opens on the weekday named and closes the next day.
    timezone: str = "UTC"
    open: dt.time = dt.time(9, 30)
    close: dt.time = dt.time(16, 0)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    # Dates (in ``timezone``) on which no session opens; for an overnight session, the date it would open.
    holidays: list[dt.date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("weekdays")
    @classmethod
    def _real_weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(day not in range(7) for day in value):
            raise ValueError(f"weekdays must be a non-empty list of 0 (Monday) .. 6 (Sunday), got {value}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "ScheduleSettings":
        hours = sorted({"timezone", "open", "close", "weekdays", "holidays"} & self.model_fields_set)
        if self.calendar is not None:
            if hours:
                raise ValueError(f"calendar={self.calendar!r} gives the hours: drop {', '.join(hours)} "
                                 f"(they would be ignored)")
            if self.always_open and "always_open" in self.model_fields_set:
                raise ValueError(f"always_open = true and calendar={self.calendar!r} contradict each other")
        elif self.always_open and self.holidays:
            raise ValueError("holidays need hours to close: set always_open = false (or a calendar)")
        elif not self.always_open and self.open == self.close:
            raise ValueError(f"open {self.open} equals close: the market would never open "
                             f"(open after close is an overnight session)")
        return self


class HealthSettings(BaseModel):
    """Thresholds of the orchestrator's health assessment and how it reacts."""

    model_config = ConfigDict(extra="forbid")

    connector_max_latency_ms: float = Field(default=250.0, gt=0)
    connector_max_new_errors: int = Field(default=20, ge=0)  # per assessment
    engine_max_p99_ms: float = Field(default=50.0, gt=0)
    engine_error_storm: int = Field(default=10, ge=1)  # new engine errors per assessment
    # How often to assess while DEGRADED (health_check_interval_s applies otherwise).
    degraded_check_interval_s: float = Field(default=1.0, gt=0)
    # Back to LIVE by itself after this long (session time: market time in a replay) with
    # everything healthy, no new safety event and no safety condition still holding; null (None)
    # turns the automatic recovery off.
    auto_recover_after_s: float | None = Field(default=30.0, gt=0)
    # Trading while DEGRADED: only orders that reduce a position (default), all, or none.
    degraded_mode: Literal["reduce_only", "continue", "halt"] = "reduce_only"
    # A process silent this long (a restart takes seconds; this is one that is not coming back) takes
    # a DEGRADED session to FAILSAFE; null turns it off. A FATAL report from supervisord's event
    # listener escalates at once.
    missing_escalate_after_s: float | None = Field(default=60.0, gt=0)
    # Every connector down (or unhealthy) this long goes to FAILSAFE: no venue to trade with or to
    # flatten at, and the people on call must hear of it. Null: stay DEGRADED.
    connector_down_escalate_after_s: float | None = Field(default=30.0, gt=0)
    # Daily realized plus unrealized loss beyond this goes to FAILSAFE.
    max_daily_loss: float = Field(default=5_000.0, gt=0)


class FailsafeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Each step is a command with this timeout; a failed round (not flat) is retried.
    step_timeout_s: float = Field(default=0.5, gt=0)
    attempts: int = Field(default=3, ge=1)
    # How long to wait for the venue to confirm no open order and no position, per attempt.
    verify_timeout_s: float = Field(default=2.0, gt=0)
    # After ``attempts`` rounds the venue still not flat: further rounds until it is, the pause
    # between them doubling from retry_initial_s to retry_max_s (``tradectl flatten`` runs one now).
    retry_initial_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    # A FAILSAFE whose sequence has finished flat that finds the book holding a position or an
    # order again for this long (an order placed at the venue behind our back) runs a round again.
    holdings_grace_s: float = Field(default=3.0, gt=0)
    # Alert sinks: an HTTP webhook (POST, JSON body) and a local command (JSON on stdin).
    webhook_url: str | None = None
    alert_command: list[str] | None = None
    alert_timeout_s: float = Field(default=3.0, gt=0)

    @model_validator(mode="after")
    def _retry_pause_grows(self) -> "FailsafeSettings":
        if self.retry_initial_s > self.retry_max_s:
            raise ValueError(f"retry_initial_s {self.retry_initial_s:g} must not exceed retry_max_s {self.retry_max_s:g}")
        return self


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds between overall health assessments (faster while DEGRADED).
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # Degradations within ``degradation_window_s`` (session time: market time in a replay) that
    # escalate to FAILSAFE.
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
    # Free space watched on the state and log directories: below this the session degrades with an
    # alert (and may not open or recover), before a full disk stops the journals and the logs.
    min_free_disk_mb: float = Field(default=100.0, ge=0)
    disk_check_interval_s: float = Field(default=5.0, gt=0)
    # The session logs (logs/live/, five files) rotate by size, keeping this many previous parts
    # each; together one session's files stay within session_log_budget_mb: each file has a share
    # of it (the JSON lines 40 %, the live log 30 %, the three others 10 % each), split over its
    # parts, and no part is larger than session_log_max_bytes (services/orchestrator/session_logs.py).
    session_log_max_bytes: int = Field(default=50 << 20, ge=MIN_LOG_PART_BYTES)
    session_log_backups: int = Field(default=10, ge=1)
    session_log_budget_mb: float = Field(default=200.0, gt=0)
    # Prometheus metrics at http://<metrics_host>:<metrics_port>/metrics; port 0 takes any free
    # port (``tradectl status --json`` shows the URL as ``metrics_url``), null serves none.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=9464, ge=0, le=65535)
    health: HealthSettings = HealthSettings()
    failsafe: FailsafeSettings = FailsafeSettings()

    @property
    def session_log_budget_bytes(self) -> int:
        return int(self.session_log_budget_mb * (1 << 20))

    @model_validator(mode="after")
    def _log_budget_fits(self) -> "OrchestratorSettings":
        parts = part_bytes(self.session_log_max_bytes, self.session_log_backups, self.session_log_budget_bytes)
        kind, smallest = min(parts.items(), key=lambda item: item[1])
        if smallest < MIN_LOG_PART_BYTES:
            raise ValueError(f"session_log_budget_mb={self.session_log_budget_mb:g} over {self.session_log_backups + 1} "
                             f"parts per file leaves {smallest:,} bytes per part of {kind} (at least "
                             f"{MIN_LOG_PART_BYTES:,}): raise the budget or lower session_log_backups")
        return self
