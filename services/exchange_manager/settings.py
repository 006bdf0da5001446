"""Exchange manager settings (section ``[exchange_manager]``, env ``TRADING_EXCHANGE_MANAGER__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proto.venue_reports import MAX_FILL_PAGE
from services.setting_fields import NameField, SymbolField
from services.venues.settings import ConnectorSettings, VenueSimConnectorSettings


class RiskLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_order_qty: float = Field(default=10.0, gt=0)
    max_order_notional: float = Field(default=250_000.0, gt=0)
    max_position: float = Field(default=5.0, gt=0)  # per symbol, absolute quantity
    max_gross_exposure: float = Field(default=1_000_000.0, gt=0)  # sum of |qty| x mark
    max_orders_per_s: int = Field(default=20, ge=1)

    # Instrument checks (services/exchange_manager/instrument_checks.py): a limit price further than
    # this from the mark (last quote's mid or trade) is refused, as is an opening order with no mark.
    # The engine applies the same collar to its strategies' orders before they leave.
    price_collar_pct: float = Field(default=10.0, gt=0, le=1_000)


class ExchangeManagerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connectors: list[ConnectorSettings] = Field(default_factory=lambda: [VenueSimConnectorSettings()])
    default_connector: NameField = "sim"
    # Each instrument trades at one venue: symbol -> connector (the others go to default_connector).
    # Its position is that venue's, reconciled there; an order naming another connector is refused.
    routes: dict[SymbolField, NameField] = Field(default_factory=dict)
    risk: RiskLimits = RiskLimits()
    # The book of record on disk (in paths.state_dir). Written through to the operating system
    # before an order leaves (survives kill -9); fsync_per_order also survives a power cut.
    journal_file: str = "exchange_manager.sqlite"
    fsync_per_order: bool = False
    # Dead-man switch of the pre-trade gate: with no word from the orchestrator for this long,
    # the gate refuses orders that open or increase a position.
    deadman_timeout_s: float = Field(default=2.0, gt=0)
    # An order of ours the venue neither holds nor has heard of is "lost in transit" only after
    # this long: it must exceed the venue's worst acknowledgement time, or a slow venue's orders
    # are written off while still on their way (and a flatten sent again on top of them).
    in_flight_grace_s: float = Field(default=5.0, gt=0)
    # Continuous reconciliation: open orders and positions are compared with every connected venue
    # this often (and at once on a fill or an order the book did not send). One comparison is one
    # question when nothing was missed; its answers never grow with the session's history.
    reconcile_interval_s: float = Field(default=2.0, gt=0, le=3600)
    # Fills asked per page when the book has missed some (each ~200 bytes on the wire).
    reconcile_page_size: int = Field(default=500, ge=1, le=MAX_FILL_PAGE)
    # Reconciliations asked for back to back (a failsafe verifying flat) start at most this often
    # per venue; a request meanwhile joins the next run instead of starting one of its own.
    reconcile_min_gap_s: float = Field(default=0.05, ge=0, le=10)
    # Market data (the marks) is read when an order is checked, before the gate, and at least this
    # often, not as each quote arrives: at 1,000 quotes/s the exchange manager would wake 1,000 times a
    # second, on the cores the order path needs, for marks it reads a hundred times (issue 16).
    marks_read_every_s: float = Field(default=0.25, gt=0, le=1)

    @model_validator(mode="after")
    def _default_exists(self) -> "ExchangeManagerSettings":
        names = [c.name for c in self.connectors]
        if len(set(names)) != len(names):
            raise ValueError(f"connector names must be unique: {names}")
        if self.default_connector not in names:
            raise ValueError(f"default_connector {self.default_connector!r} is not among the connectors {names}")
        unknown = {s: c for s, c in self.routes.items() if c not in names}
        if unknown:
            raise ValueError(f"routes name connectors that are not among the connectors {names}: {unknown}")
        return self

    def connector_for(self, symbol: str) -> str:
        """The connector ``symbol`` trades through."""
        return self.routes.get(symbol, self.default_connector)
