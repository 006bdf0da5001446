"""Safety settings (section ``[safety]``, env ``TRADING_SAFETY__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SafetySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
