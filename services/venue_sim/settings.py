"""Venue simulator settings (section ``[venue_sim]``, env ``TRADING_VENUE_SIM__<FIELD>``).

The simulator stands in for the outside world: a real deployment points the exchange manager's
connectors at real venues and does not run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from services.setting_fields import NameField, SymbolField


class ReplayFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path
    symbol: SymbolField
    # auto: recognised from the header (bars, quotes, histdata, tardis); see services/venue_sim/replay.py
    format: Literal["auto", "bars", "quotes", "histdata", "tardis"] = "auto"


class InstrumentSettings(BaseModel):
    """One market's specification at the simulated venue (``proto.Instrument``)."""

    model_config = ConfigDict(extra="forbid")

    tick_size: float = Field(gt=0, le=1e6)
    lot_size: float = Field(gt=0, le=1e6)
    min_qty: float | None = Field(default=None, gt=0)  # None: one lot
    max_qty: float | None = Field(default=None, gt=0)
    min_notional: float = Field(default=1.0, ge=0)  # quantity x price, in the quote currency

    @model_validator(mode="after")
    def _consistent(self) -> "InstrumentSettings":
        if self.min_qty is not None and self.min_qty < self.lot_size:
            raise ValueError(f"min_qty={self.min_qty:g} is below lot_size={self.lot_size:g}")
        if self.max_qty is not None and self.max_qty < (self.min_qty or self.lot_size):
            raise ValueError(f"max_qty={self.max_qty:g} is below the minimum quantity")
        return self


class ExchangeApiSettings(BaseModel):
    """The simulator's second face: the subset of Binance's spot REST API that ccxt's ``binance``
    class calls (``services/venue_sim/exchange_api/``), over the same matching engine. Off unless
    enabled; served on ``host:port`` (loopback by default: it is a test venue)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8790, ge=1, le=65535)
    # The test account's key pair: signed requests carry the key and an HMAC-SHA256 of their query
    # under the secret, as Binance's do. Set the secret from the environment
    # (TRADING_VENUE_SIM__EXCHANGE_API__API_SECRET) for anything but a local test venue.
    api_key: str = Field(default="sim-test-key", min_length=8, max_length=128)
    api_secret: SecretStr = SecretStr("sim-test-secret")
    # A signed request stamped further than this from the venue's clock is refused (-1021).
    recv_window_ms: int = Field(default=10_000, ge=1, le=60_000)
    # Requests per second beyond which the venue answers 429 (-1003), as Binance's weight limit does.
    max_requests_per_s: float = Field(default=100.0, gt=0)
    # The account's balances at start, per asset; a buy needs the quote, a sell the base (spot):
    # an order beyond them is refused "insufficient balance" (-2010).
    balances: dict[str, float] = Field(default_factory=lambda: {
        "USD": 1_000_000.0, "BTC": 10.0, "ETH": 100.0, "SOL": 1_000.0})


class VenueSimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    venue: NameField = "SIM"
    # price source: a synthetic random walk (default) or a replay of recorded files
    source: Literal["synthetic", "replay"] = "synthetic"
    symbols: dict[SymbolField, float] = Field(default_factory=lambda: {"BTC-USD": 40_000.0, "ETH-USD": 3_000.0,
                                                                       "SOL-USD": 150.0})
    # What an order must respect per symbol (services/venue_sim/instruments.py), served by the
    # ``instruments`` command. A symbol it trades without an entry here gets one derived from its
    # first price: about six significant digits of tick, a lot worth about a tenth of a quote unit.
    instruments: dict[SymbolField, InstrumentSettings] = Field(default_factory=lambda: {
        "BTC-USD": InstrumentSettings(tick_size=0.01, lot_size=0.00001),
        "ETH-USD": InstrumentSettings(tick_size=0.01, lot_size=0.0001),
        "SOL-USD": InstrumentSettings(tick_size=0.01, lot_size=0.001),
    })
    quotes_per_s: float = Field(default=5.0, gt=0, le=200_000)  # per symbol
    volatility_bps_per_sqrt_s: float = Field(default=4.0, ge=0)
    jump_probability_per_s: float = Field(default=0.002, ge=0, le=1)
    jump_bps: float = Field(default=40.0, ge=0)
    spread_bps: float = Field(default=2.0, gt=0)
    seed: int | None = None

    replay_files: list[ReplayFile] = Field(default_factory=list)
    replay_speed: float = Field(default=600.0, gt=0)
    replay_loop: bool = False
    # Hold the replay until the first market-data subscriber (the data router) has connected, so
    # a one-shot replay is not half gone before anyone listens.
    replay_wait_for_subscriber: bool = True

    # matching
    slippage_bps: float = Field(default=0.5, ge=0)
    fee_bps: float = Field(default=1.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    max_order_qty: float = Field(default=1_000_000.0, gt=0)
    # A limit price further than this from the touch's mid is rejected, as venues' percent-price
    # filters do (wider than the gate's own collar, exchange_manager.risk.price_collar_pct).
    price_band_pct: float = Field(default=20.0, gt=0)

    exchange_api: ExchangeApiSettings = Field(default_factory=ExchangeApiSettings)

    @model_validator(mode="after")
    def _replay_has_files(self) -> "VenueSimSettings":
        # The files themselves are read by the venue simulator alone, at its start (prices.py):
        # a file that vanished must not stop any other process from (re)starting mid-session.
        if self.source == "replay" and not self.replay_files:
            raise ValueError('source is "replay" but replay_files is empty: the venue would publish no market '
                             'data (add [[venue_sim.replay_files]] with path and symbol, or source = "synthetic")')
        return self

    def traded_symbols(self) -> tuple[str, list[str]]:
        """(the setting that lists them, the symbols this venue trades): its replay files' or its
        synthetic symbols, by ``source``."""
        if self.source == "replay":
            return "venue_sim.replay_files", list(dict.fromkeys(f.symbol for f in self.replay_files))
        return "venue_sim.symbols", list(self.symbols)
