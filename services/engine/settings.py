"""Engine settings (section ``[engine]``, env ``TRADING_ENGINE__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Dead-man switch: with no word from the orchestrator for this long, stop trading by itself.
    deadman_timeout_s: float = Field(default=2.0, gt=0)
