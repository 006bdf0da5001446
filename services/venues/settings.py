"""Each venue adapter's connector settings (``[[exchange_manager.connectors]]``), told apart by ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from services.setting_fields import NameField


class LinkSettings(BaseModel):
    """What every connector's link has: its name, its time limits and its reconnection backoff."""

    model_config = ConfigDict(extra="forbid")

    name: NameField = "sim"
    request_timeout_s: float = Field(default=1.0, gt=0)
    # The venue is considered gone after this long without any message (or answer) from it.
    heartbeat_timeout_s: float = Field(default=1.0, gt=0)
    reconnect_initial_s: float = Field(default=0.1, gt=0)
    reconnect_max_s: float = Field(default=5.0, gt=0)
    reconnect_jitter: float = Field(default=0.2, ge=0, le=1)


class VenueSimConnectorSettings(LinkSettings):
    """The venue simulator's native connector (``services/venues/venue_sim/execution.py``)."""

    kind: Literal["venue_sim"] = "venue_sim"
    venue: str = "venue_sim"  # whose endpoints to use (bus endpoint naming)


class CcxtConnectorSettings(LinkSettings):
    """A venue reached through ccxt (``services/venues/ccxt/``): any exchange ccxt knows that offers
    the unified calls the adapter uses.

    The API key and secret are never in the settings file: they come from the environment variables
    ``api_key_env`` and ``secret_env`` name, or from ``credentials_file`` (JSON ``{"apiKey": ...,
    "secret": ...}``, mode 0600 or refused).
    """

    kind: Literal["ccxt"]
    exchange: str = Field(min_length=1, max_length=64)  # ccxt's id: "binance", "kraken", ...
    # Replacements for entries of the exchange's ``urls['api']`` (a test venue, a sandbox), nested
    # ones entry by entry: ``ws = { spot = "...", ws-api = { spot = "..." } }`` for Binance's streams.
    urls: dict[str, str | dict[str, str | dict[str, str]]] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)  # ccxt options of the exchange class
    # ccxt's pause per unit of request weight (its ``rateLimit``, ms); None: the exchange class's own
    # (Binance: 50 ms). The limiter is always on: an account with higher limits, or a test venue,
    # may lower it.
    rate_limit_ms: float | None = Field(default=None, gt=0, le=60_000)
    api_key_env: str | None = None
    secret_env: str | None = None
    credentials_file: Path | None = None
    # Our symbol → the exchange's unified symbol; by default "BTC-USD" is "BTC/USD".
    symbols: dict[str, str] = Field(default_factory=dict)
    # Spot: holdings per asset that are not the session's positions (a position is what the
    # account holds of a base asset beyond this).
    inventory: dict[str, float] = Field(default_factory=dict)
    # Polling, where the exchange offers no stream (or the adapter does not use it): orders and
    # trades this often; a venue is counted gone after heartbeat_timeout_s without an answer.
    poll_interval_s: float = Field(default=0.25, gt=0)
    heartbeat_timeout_s: float = Field(default=3.0, gt=0)
    request_timeout_s: float = Field(default=5.0, gt=0)
    # How far back trades are read when the adapter starts (its fill numbering starts there): a
    # reconciliation's window, bounded whatever the account's history.
    fills_lookback_s: float = Field(default=3600.0, gt=0)
    # The most trades the venue answers in one read (``fetch_my_trades``' limit; Binance: 1,000): a
    # full page means more follow, read at once (a mass status must see every trade up to its
    # balances). Set it to the venue's own maximum: a venue that answers fewer would look complete.
    trades_page: int = Field(default=1000, ge=1, le=10_000)
    # ccxt's websocket streams (ccxt.pro's ``watch_*``), where the exchange has them: quotes
    # (watch_bids_asks, else watch_order_book), the account's orders and trades (watch_orders,
    # watch_my_trades). Polling stays: as the fallback while a stream is down or missing, and, slowed
    # to stream_poll_interval_s while the streams are up, as the safety net that catches what a
    # stream lost. false: polling only.
    streams: bool = True
    stream_poll_interval_s: float = Field(default=2.0, gt=0)
    # A market-data stream silent this long is reconnected (its quotes are polled meanwhile, from
    # heartbeat_timeout_s of silence on); the account's streams are judged by ping and pong instead
    # (they are quiet while nothing trades).
    stream_quiet_s: float = Field(default=15.0, gt=0)

    def streams_off_why(self) -> str | None:
        """Why the streams are not used despite ``streams`` (None: they are, or it is false). REST
        pointed elsewhere (a test venue) with the streams left at the exchange itself would mix the
        real exchange's quotes and account events into that session: polling only, then."""
        moved = {"public", "private"} & set(self.urls)
        if self.streams and moved and "ws" not in self.urls:
            return f"urls replaces {'/'.join(sorted(moved))} but not ws: polling only (set urls.ws for streams)"
        return None


def _kind(value: Any) -> str:
    """A connector's kind; one written without it is the simulator's (the settings before kinds)."""
    found = value.get("kind", "venue_sim") if isinstance(value, dict) else getattr(value, "kind", "venue_sim")
    return found if isinstance(found, str) else ""


ConnectorSettings = Annotated[
    Annotated[VenueSimConnectorSettings, Tag("venue_sim")] | Annotated[CcxtConnectorSettings, Tag("ccxt")],
    Discriminator(_kind),
]
