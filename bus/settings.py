"""The bus section of the settings: transport, endpoints, socket limits, liveness timing."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proto.fields import SYMBOL_MAX
from proto.topics import MARKET_DATA_PREFIX

# The longest topic prefix the system itself subscribes to: ``md.`` and the longest symbol the wire
# accepts. The limit below can be no shorter, or a valid symbol's market data could not be asked for.
MAX_SUBSCRIPTION_BYTES = len(MARKET_DATA_PREFIX) + SYMBOL_MAX


class BusSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # ipc:// sockets in the run directory (one machine, mode 0700) or tcp:// (several hosts).
    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_host: str = "127.0.0.1"
    # Where each service is, for tcp across hosts: {service: host}; a service not named here is on
    # tcp_host. Every process binds its own sockets on bind_host (default: its host as named here).
    hosts: dict[str, str] = {}
    bind_host: str | None = None
    # CURVE on every socket (bus/curve.py): clients authenticated by their key against the key
    # directory, servers by theirs. Off only for a single host over ipc (a benchmark's comparison):
    # tcp without CURVE is refused at start.
    curve: bool = True
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
    # Replies remembered per server for idempotent retries: at most this many, and at most this many
    # bytes (ids, replies and a fixed overhead per entry), oldest evicted first.
    command_cache_size: int = Field(default=10_000, ge=100)
    command_cache_bytes: int = Field(default=16 << 20, ge=1 << 20)

    # Subscriptions peers send to a PUB socket (bus.subscription_guard). A longer topic prefix makes
    # ZeroMQ drop that connection before anything is stored (libzmq keeps about 50 bytes per byte
    # of every prefix held: 100,000 prefixes of 1 KB took the orchestrator to 5 GB). At least
    # ``md.`` and the longest symbol (67 bytes); ``Subscriber.subscribe`` refuses a longer prefix.
    max_subscription_bytes: int = Field(default=MAX_SUBSCRIPTION_BYTES, ge=MAX_SUBSCRIPTION_BYTES, le=1024)
    # Distinct prefixes held for one peer (a process on ipc, a host on tcp) and for one socket in
    # all; a peer over either is cut off (it reconnects, and starts from nothing again).
    subscriptions_per_peer: int = Field(default=1_000, ge=16)
    subscriptions_per_socket: int = Field(default=2_000, ge=16)
    # Streams a subscriber follows (publisher x topic, for gap detection) and publishers it tracks;
    # a message that would need more is refused and counted.
    subscriber_max_streams: int = Field(default=20_000, ge=100)
    subscriber_max_publishers: int = Field(default=256, ge=16)
    # Publish every command request and reply on ``audit.<service>`` (for ``tradectl bus calls``).
    command_audit: bool = True

    @model_validator(mode="after")
    def _exposure(self) -> "BusSettings":
        if self.transport == "tcp" and not self.curve:
            raise ValueError("transport = \"tcp\" with curve = false would take commands from the network "
                             "unauthenticated: set curve = true (the default) and give every host its keys")
        return self

    @model_validator(mode="after")
    def _caps_fit(self) -> "BusSettings":
        if self.subscriptions_per_peer > self.subscriptions_per_socket:
            raise ValueError(f"subscriptions_per_peer={self.subscriptions_per_peer} is above subscriptions_per_socket="
                             f"{self.subscriptions_per_socket}: one peer could fill the socket")
        return self
