"""Exchange manager settings (section ``[exchange_manager]``, env ``TRADING_EXCHANGE_MANAGER__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ExchangeManagerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Dead-man switch of the pre-trade gate: with no word from the orchestrator for this long,
    # the gate refuses orders that open or increase a position.
    deadman_timeout_s: float = Field(default=2.0, gt=0)
