"""The venue as the fault harness reads it, one view per adapter the exchange manager trades through.

The harness checks the exchange manager against the venue; what "the venue" shows depends on how
the session reaches it. The simulator keeps accounts on one market (``services/venue_sim/matching.py``):
its native ``proto`` face trades the ``native`` account, its Binance REST face (ccxt's) another one,
and each face shows its own account alone. So:

  * ``NativeView`` (``adapter = "native"``, the default configuration): the native face's own
    queries, ``positions``, ``open_orders``, ``fills_since``;
  * ``CcxtView`` (``adapter = "ccxt"``, ``deploy/ccxt-sim.toml``): the Binance face, through ccxt's
    ``binance`` class with the connector's key, from outside, as a user verifies a real exchange:
    positions are ``fetch_balance`` totals beyond the connector's ``inventory``, open orders
    ``fetch_open_orders``, fills ``fetch_my_trades`` (each trade's client order id by ``fetch_order``).

Either way, which client order ids reached the venue and how many came twice is the simulator's
audit (``orders_received``, ``status.duplicate_ids``), which covers every account: a real exchange
has no such thing to ask, and the harness needs it for "no duplicate id".

Each view also says how late the connector may learn of a fill (``report_delay_s``): the native
venue pushes its fills; ccxt's connector polls for them (every ``poll_interval_s``, paused while a
mass status is read over REST).
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ccxt

from bus import CommandTimeout
from integration.daemon import Daemon
from integration.e2e import merged, venue_record

EPS = 1e-9
ADAPTERS = ("native", "ccxt")
CCXT_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "ccxt-sim.toml"
CCXT_CREDENTIALS = {"SIM_API_KEY": "sim-test-key", "SIM_API_SECRET": "sim-test-secret"}
MAX_TRADES = 1000  # Binance's largest myTrades page


class VenueUnreachable(CommandTimeout):
    """The venue did not answer (down, restarting, or refusing for a while): what a command timeout
    is to the native face, so every wait that rides one out rides this out too."""


@dataclass
class VenueRecord:
    """What one incarnation of the venue received and filled for the session, as of now."""

    epoch: int
    cids: list[str]  # client order ids received, in arrival order (every account)
    duplicate_ids: int
    fills: list[dict[str, Any]] = field(default_factory=list)  # each with fill_id, client_order_id, ts_ns


class VenueView:
    """The venue reads the harness makes (see the module's docstring)."""

    adapter = ""
    report_delay_s = 0.0
    # How long the exchange manager's ``reconcile`` may take to answer: it answers once a run has
    # ended, and a request made while one is out joins the next (the exchange manager gives up after
    # venue_watch.REPLY_WITHIN_S, 10 s).
    reconcile_reply_s = 2.0

    def __init__(self, d: Daemon) -> None:
        self.d = d

    def positions(self) -> dict[str, float]:
        """The session's non-zero positions at the venue, ``{symbol: qty}``."""
        raise NotImplementedError

    def open_orders(self) -> list[dict[str, Any]]:
        """The session's orders open at the venue, each with ``client_order_id`` and ``symbol``."""
        raise NotImplementedError

    def record(self) -> VenueRecord:
        """The current incarnation's whole record, read a page at a time."""
        raise NotImplementedError

    def ask(self, command: str, **args: Any) -> dict[str, Any]:
        """A command to the simulator's native face (its audit, its status, its faults)."""
        reply = self.d.call("venue_sim", command, timeout_s=2.0, retries=2, **args)
        if not reply.ok:
            raise AssertionError(f"venue_sim refused {command}: {reply.error}")
        return reply.result

    def _audit(self) -> tuple[int, list[str], int]:
        """(epoch, every client order id received, duplicate ids): the simulator's own audit."""
        epoch = self.ask("status")["epoch"]
        ids: list[str] = []
        while True:
            page = self.ask("orders_received", after=len(ids))
            ids += page["ids"]
            if not page["more"]:
                break
        return epoch, ids, int(self.ask("status")["stats"]["duplicate_ids"])


class NativeView(VenueView):
    adapter = "native"
    report_delay_s = 0.0  # the venue pushes its reports
    reconcile_reply_s = 2.0  # a run takes milliseconds

    def positions(self) -> dict[str, float]:
        positions = self.ask("positions")["positions"]
        return {s: p["qty"] for s, p in positions.items() if abs(p["qty"]) > EPS}

    def open_orders(self) -> list[dict[str, Any]]:
        return self.ask("open_orders")["orders"]

    def record(self) -> VenueRecord:
        epoch = self.ask("status")["epoch"]
        result = venue_record(lambda _service, command, **args: self.ask(command, **args))
        return VenueRecord(epoch, list(result["client_order_ids"]), int(result["duplicate_ids"]), result["fills"])


class CcxtView(VenueView):
    adapter = "ccxt"
    # The connector polls (poll_interval_s 0.25 s), a full sweep of every symbol every 5 s, and
    # pauses polling while a mass status is read over REST (a second or two): a fill reaches the
    # book of record up to a few seconds after the venue's trade.
    report_delay_s = 3.0
    # A mass status over REST behind ccxt's rate limiter (Binance's weights): 1.5-2 s a run, and a
    # request may wait for the run out to end first.
    reconcile_reply_s = 12.0
    MIN_GAP_S = 0.01  # between the harness's requests: an observer, not a load

    def __init__(self, d: Daemon, connector: dict[str, Any]) -> None:
        super().__init__(d)
        self.inventory: dict[str, float] = dict(connector["inventory"])
        exchange = ccxt.binance({"apiKey": CCXT_CREDENTIALS["SIM_API_KEY"], "secret": CCXT_CREDENTIALS["SIM_API_SECRET"],
                                 "enableRateLimit": False, "timeout": 3000, "options": dict(connector["options"])})
        exchange.urls["api"] = {**exchange.urls["api"], **connector["urls"]}
        self.exchange = exchange
        self._last_request = 0.0
        self._ours: dict[str, str] = {}  # unified symbol -> ours
        # the current venue incarnation's fills, read incrementally: from each symbol's next trade id
        self._epoch: int | None = None
        self._from_id: dict[str, int] = {}
        self._fills: dict[str, dict[str, Any]] = {}
        self._cid_of_order: dict[str, str] = {}

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        wait = self._last_request + self.MIN_GAP_S - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return fn(*args, **kwargs)
        except ccxt.NetworkError as exc:  # no answer, a 5xx, or 429 (DDoSProtection)
            raise VenueUnreachable(f"{self.exchange.id} did not answer: {type(exc).__name__}: {str(exc)[:200]}") from exc
        finally:
            self._last_request = time.monotonic()

    def _markets(self) -> dict[str, str]:
        if not self._ours:
            markets = self._call(self.exchange.load_markets)
            self._ours = {unified: f"{m['base']}-{m['quote']}" for unified, m in markets.items() if m.get("spot")}
        return self._ours

    def positions(self) -> dict[str, float]:
        totals = self._call(self.exchange.fetch_balance)["total"]
        held = {}
        for unified, ours in self._markets().items():
            base = self.exchange.markets[unified]["base"]
            held[ours] = float(totals.get(base) or 0.0) - self.inventory.get(base, 0.0)
        return {s: round(q, 9) for s, q in held.items() if abs(q) > EPS}

    def open_orders(self) -> list[dict[str, Any]]:
        ours = self._markets()
        return [{"client_order_id": o["clientOrderId"], "symbol": ours.get(o["symbol"], o["symbol"]),
                 "side": o["side"], "qty": o["amount"], "filled_qty": o["filled"], "limit_price": o["price"],
                 "venue_order_id": o["id"]}
                for o in self._call(self.exchange.fetch_open_orders)]

    def record(self) -> VenueRecord:
        for _ in range(3):
            epoch, cids, duplicates = self._audit()
            if epoch != self._epoch:  # a new venue: its trades, ids and orders are its own
                self._epoch, self._from_id, self._fills, self._cid_of_order = epoch, {}, {}, {}
            self._read_trades()
            if self.ask("status")["epoch"] == epoch:
                return VenueRecord(epoch, cids, duplicates, sorted(self._fills.values(), key=lambda f: f["ts_ns"]))
        raise VenueUnreachable("the venue kept restarting while its record was read")

    def _read_trades(self) -> None:
        """The account's trades since the last read, symbol by symbol, a page at a time."""
        for unified, ours in self._markets().items():
            while True:
                params = {"fromId": self._from_id[unified]} if unified in self._from_id else {}
                trades = self._call(self.exchange.fetch_my_trades, unified, None, MAX_TRADES, params)
                for t in trades:
                    self._fills[str(t["id"])] = {
                        "fill_id": str(t["id"]), "client_order_id": self._cid(str(t["order"]), unified),
                        "symbol": ours, "side": t["side"], "qty": t["amount"], "price": t["price"],
                        "ts_ns": int(t["timestamp"]) * 1_000_000}
                    self._from_id[unified] = max(self._from_id.get(unified, 0), int(t["id"]) + 1)
                if len(trades) < MAX_TRADES:
                    break

    def _cid(self, order_id: str, unified: str) -> str:
        if order_id not in self._cid_of_order:
            order = self._call(self.exchange.fetch_order, order_id, unified)
            self._cid_of_order[order_id] = order.get("clientOrderId") or f"venue-{order_id}"
        return self._cid_of_order[order_id]


# -- the daemon of each adapter ---------------------------------------------------------------------


def ccxt_config(base: dict[str, Any], port: int) -> dict[str, Any]:
    """``base`` (the matrix's settings) on ``deploy/ccxt-sim.toml``, its venue's REST face on
    ``port``. The face's request limit is raised out of the session's reach: the harness reads the
    venue through it too, and an observer must not spend the connector's budget (on Binance a
    verifier elsewhere has its own)."""
    config = merged(tomllib.loads(CCXT_CONFIG.read_text(encoding="utf-8")), base)
    api = config["venue_sim"]["exchange_api"]
    connector = config["exchange_manager"]["connectors"][0]
    connector["urls"] = _on_port(connector["urls"], f"{api['host']}:{api['port']}", f"{api['host']}:{port}")
    api.update(port=port, max_requests_per_s=10_000.0)
    return config


def _on_port(urls: Any, old: str, new: str) -> Any:
    """The connector's ``urls`` (REST, and streams where it has them), at the venue's new address."""
    if isinstance(urls, dict):
        return {k: _on_port(v, old, new) for k, v in urls.items()}
    return urls.replace(f"//{old}/", f"//{new}/")


def make_view(adapter: str, d: Daemon, config: dict[str, Any]) -> VenueView:
    if adapter == "native":
        return NativeView(d)
    if adapter == "ccxt":
        return CcxtView(d, config["exchange_manager"]["connectors"][0])
    raise ValueError(f"no venue view for adapter {adapter!r}")
