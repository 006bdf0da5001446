"""Orchestrator settings (section ``[orchestrator]``, env ``TRADING_ORCHESTRATOR__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
    # Commands the orchestrator sends to the other services (enable/disable trading, ...).
    command_timeout_s: float = Field(default=0.5, gt=0)
    command_retries: int = Field(default=3, ge=0)
    journal_file: str = "orchestrator.sqlite"
