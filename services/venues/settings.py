"""Each venue adapter's connector settings (``[[exchange_manager.connectors]]``), told apart by ``kind``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.setting_fields import NameField


class ConnectorSettings(BaseModel):
    """The venue simulator's native connector (``services/venues/venue_sim/execution.py``)."""

    model_config = ConfigDict(extra="forbid")

    name: NameField = "sim"
    kind: Literal["venue_sim"] = "venue_sim"
    venue: str = "venue_sim"  # whose endpoints to use (bus endpoint naming)
    request_timeout_s: float = Field(default=1.0, gt=0)
    # The venue is considered gone after this long without any message from it.
    heartbeat_timeout_s: float = Field(default=1.0, gt=0)
    reconnect_initial_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    reconnect_jitter: float = Field(default=0.2, ge=0, le=1)
