"""Data router settings (section ``[data_router]``, env ``TRADING_DATA_ROUTER__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DataRouterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
