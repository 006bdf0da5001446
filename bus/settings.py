"""The bus section of the settings: transport, endpoints, socket limits, liveness timing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ipc:// sockets in the run directory (one machine, mode 0700) or tcp:// (several hosts).
    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_host: str = "127.0.0.1"
    # tcp ports: base + 2*index for PUB, base + 2*index + 1 for commands (index in SERVICE_NAMES).
    tcp_base_port: int = Field(default=47100, ge=1024, le=65000)

    # High-water marks (messages). A PUB socket at its HWM drops for that slow subscriber only;
    # the publisher never blocks.
    pub_hwm: int = Field(default=100_000, ge=1)
    sub_hwm: int = Field(default=100_000, ge=1)
    command_hwm: int = Field(default=10_000, ge=1)
    linger_ms: int = Field(default=0, ge=0)
    max_message_bytes: int = Field(default=1 << 20, ge=1024)

    heartbeat_interval_s: float = Field(default=0.25, gt=0, le=5)
    # A process is missing after this many heartbeat intervals without any message from it.
    missed_heartbeats: int = Field(default=4, ge=2)

    command_timeout_s: float = Field(default=1.0, gt=0)
    command_retries: int = Field(default=2, ge=0)
    # Replies remembered per server for idempotent retries.
    command_cache_size: int = Field(default=10_000, ge=100)
    # Publish every command request and reply on ``audit.<service>`` (for ``tradectl bus calls``).
    command_audit: bool = True
