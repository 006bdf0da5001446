"""Helpers for the end-to-end suites (tests/trading, tests/safety) on top of ``daemon.py``.

Kept apart from ``daemon.py`` so that module stays as its author wrote it; everything here is
generic (nothing names a test):

  * ``daemon_options(config)``: ``Daemon`` keyword arguments for a config that holds arrays of
    tables (``[[engine.strategies]]``, ``[[venue_sim.replay_files]]``), which ``daemon.to_toml``
    does not write: those go to ``toml_extra``;
  * ``open_daemon(config)``: a started ``Daemon`` whose every program answers commands
    (``wait_serving``: supervisord's RUNNING only means "alive for startsecs"), closed again if
    the start fails;
  * ``Collector``: a SUB socket on one service's PUB endpoint, read in a background thread, with
    every decoded envelope kept (``bus.Subscriber`` does the decoding and gap accounting);
  * ``WebhookSink``: a local HTTP server (127.0.0.1, a free port) recording every POST;
  * ``recompute_positions(fills)``: positions and PnL from a list of fills, written independently
    of ``services.positions``;
  * venue, book-of-record and session helpers: ``venue_positions``, ``venue_open_orders``,
    ``venue_fills``, ``em_positions``, ``submit``, ``open_position``, ``place_resting_orders``,
    ``incident_files``, ``ensure_live``, ...;
  * ``write_quotes_csv``: a ``timestamp,bid,ask`` file as the venue simulator's replay reads it;
  * pytest glue for a suite's conftest.py: ``DaemonFactory`` (a ``make_daemon`` fixture) and
    ``attach_diagnostics`` (program logs into a failed test's report).
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import zmq

import proto
from bus import CommandTimeout, Subscriber, make_socket

from .daemon import Daemon, WaitTimeout, command_services, deep_merge, wait_until

EPS = 1e-9
OPEN_STATUSES = ("new", "acknowledged", "partially_filled")


# -- settings ---------------------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML: {v!r}")


def _split_table_arrays(config: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """(config without non-empty lists of tables, TOML text of those lists as ``[[a.b]]``)."""
    plain: dict[str, Any] = {}
    extra: list[str] = []
    for key, val in config.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(val, Mapping):
            sub, more = _split_table_arrays(val, path)
            plain[key] = sub
            extra += more
        elif isinstance(val, (list, tuple)) and val and all(isinstance(x, Mapping) for x in val):
            for item in val:
                extra.append(f"[[{path}]]")
                extra += [f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in item.items()]
                extra.append("")
        else:
            plain[key] = val
    return plain, extra


def daemon_options(config: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """``Daemon(**daemon_options(config))`` for any settings dict, arrays of tables included."""
    plain, extra = _split_table_arrays(config)
    text = "\n" + "\n".join(extra) if extra else ""
    return {"config": plain, "toml_extra": options.pop("toml_extra", "") + text, **options}


def merged(*configs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in configs:
        out = deep_merge(out, config)
    return out


def wait_serving(d: Daemon, timeout: float = 30.0) -> None:
    """Wait until every program with a command socket answers ``status``: supervisord's RUNNING
    only means a process outlived ``startsecs``, not that it has bound its sockets yet."""
    for service in command_services():
        wait_until(lambda: d.call(service, "status").ok, timeout, interval=0.05, ignore=(CommandTimeout,),
                   message=lambda: d.diagnostics())


def open_daemon(config: Mapping[str, Any], *, start: bool = True, **options: Any) -> Daemon:
    """A ``Daemon`` for ``config``; started, every program serving, unless ``start=False``."""
    d = Daemon(**daemon_options(config, **options))
    if start:
        try:
            d.start()
            wait_serving(d)
        except BaseException:
            print(d.diagnostics(40))
            d.close()
            raise
    return d


# -- listening to a service's PUB socket -------------------------------------------------------


class Collector:
    """Every message a service publishes on the given topic prefixes, from ``start()`` on.

    A background thread owns the SUB socket (ZeroMQ sockets are not thread-safe) and appends
    ``(topic, envelope)`` pairs to ``items``; read them with ``bodies()`` / ``snapshot()``. It also
    subscribes to the service's heartbeat, and ``start()`` returns once one has arrived: from then
    on the subscription is live (a PUB drops what it sends before a subscriber is connected).
    A subclass keeps something else by overriding ``_keep`` (called under the lock) and
    ``_drained`` (after each batch, with the subscriber's gap counters).
    """

    def __init__(self, d: Daemon, service: str, prefixes: Iterable[str], *, timeout: float = 10.0) -> None:
        self._endpoint = d.endpoints.pub(service)
        self._service = service
        self._security = d.security()
        self._bus = d.bus
        self._heartbeat = proto.topics.heartbeat(service)
        self._prefixes = [*prefixes, self._heartbeat]
        self._timeout = timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heard = threading.Event()
        self.items: list[tuple[str, proto.Envelope]] = []
        self.subscriber_stats: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name=f"collect-{service}", daemon=True)

    def start(self) -> "Collector":
        self._thread.start()
        if not self._heard.wait(self._timeout):
            self.stop()
            raise WaitTimeout(f"no heartbeat from {self._endpoint} within {self._timeout:g}s")
        return self

    def __enter__(self) -> "Collector":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        ctx = zmq.Context()
        sock = make_socket(ctx, zmq.SUB, self._bus)
        sub = Subscriber(sock, self._bus.max_message_bytes)
        for prefix in self._prefixes:
            sub.subscribe(prefix)
        sub.connect(self._endpoint, self._service, self._security)

        def keep(topic: str, env: proto.Envelope) -> None:
            if topic == self._heartbeat:
                self._heard.set()
            with self._lock:
                self._keep(topic, env)

        try:
            while not self._stop.is_set():
                if sock.poll(50, zmq.POLLIN):
                    sub.drain(keep)
                    self._drained(sub)
            self.subscriber_stats = sub.stats()
        finally:
            sock.close(linger=0)
            ctx.term()

    def _keep(self, topic: str, env: proto.Envelope) -> None:
        self.items.append((topic, env))

    def _drained(self, sub: Subscriber) -> None:
        pass

    def snapshot(self) -> list[tuple[str, proto.Envelope]]:
        with self._lock:
            return list(self.items)

    def bodies(self, kind: type | None = None, topic_prefix: str = "") -> list[Any]:
        return [env.body for topic, env in self.snapshot()
                if topic.startswith(topic_prefix) and (kind is None or isinstance(env.body, kind))]


# -- an HTTP endpoint for alerts ----------------------------------------------------------------


class WebhookSink:
    """``http://127.0.0.1:<free port>/hook``: records each POST's path, headers and JSON body."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                sink.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                   "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def __enter__(self) -> "WebhookSink":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# -- positions from fills, independently --------------------------------------------------------


def recompute_positions(fills: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per symbol: signed qty, average entry price of what is open, realized PnL net of fees, fees
    and traded notional, replaying the fills in order (average-cost accounting)."""
    out: dict[str, dict[str, float]] = {}
    for f in fills:
        row = out.setdefault(f["symbol"], {"qty": 0.0, "avg_price": 0.0, "realized_pnl": 0.0,
                                           "fees": 0.0, "volume": 0.0})
        qty, price, fee = float(f["qty"]), float(f["price"]), float(f["fee"])
        delta = qty if f["side"] == "buy" else -qty
        row["fees"] += fee
        row["realized_pnl"] -= fee
        row["volume"] += qty * price
        held = row["qty"]
        if held == 0 or math.copysign(1, held) == math.copysign(1, delta) and abs(held) > EPS:
            # opening or adding: the average price is the quantity-weighted mean
            row["avg_price"] = (abs(held) * row["avg_price"] + qty * price) / (abs(held) + qty)
            row["qty"] = held + delta
        else:
            closed = min(abs(held), qty)
            direction = 1 if held > 0 else -1
            row["realized_pnl"] += direction * closed * (price - row["avg_price"])
            row["qty"] = held + delta
            if abs(row["qty"]) < EPS:
                row["qty"], row["avg_price"] = 0.0, 0.0
            elif qty - closed > EPS:  # went through zero: the rest is a new position at this price
                row["avg_price"] = price
        if abs(row["qty"]) < EPS:
            row["qty"] = 0.0
    return out


# -- the venue, the book of record, the session --------------------------------------------------


def ask(d: Daemon, service: str, command: str, **args: Any) -> dict[str, Any]:
    """``Daemon.request`` with a longer timeout and retries (the same command id each time, so a
    retry never runs a command twice): a busy 2-core machine may answer a poll late."""
    reply = d.call(service, command, timeout_s=2.0, retries=2, **args)
    assert reply.ok, f"{service} refused {command}: {reply.error}"
    return reply.result


def orchestrator_status(d: Daemon) -> dict[str, Any]:
    return ask(d, "orchestrator", "status")


def venue_positions(d: Daemon) -> dict[str, float]:
    """The venue's own non-zero positions, {symbol: qty}."""
    positions = ask(d, "venue_sim", "positions")["positions"]
    return {s: p["qty"] for s, p in positions.items() if abs(p["qty"]) > EPS}


def venue_open_orders(d: Daemon) -> list[dict[str, Any]]:
    return ask(d, "venue_sim", "open_orders")["orders"]


def venue_fills(d: Daemon) -> dict[str, Any]:
    """Everything the venue received and filled: ``{fills: [Fill], client_order_ids: [every id, in
    arrival order], duplicate_ids: int, session}``, read a page at a time (``fills_since``,
    ``orders_received``): no answer of the venue carries its whole history."""
    return venue_record(lambda service, command, **args: ask(d, service, command, **args))


def venue_record(ask_venue: Any) -> dict[str, Any]:
    """``venue_fills`` with the caller's way of asking (``ask_venue(service, command, **args)``)."""
    fills: list[dict[str, Any]] = []
    session = None
    while True:
        page = ask_venue("venue_sim", "fills_since", after_seq=len(fills), limit=proto.venue_reports.MAX_FILL_PAGE)
        if session is not None and page["session"] != session:  # the venue restarted meanwhile: start again
            fills, session = [], page["session"]
            continue
        session = page["session"]
        fills += page["fills"]
        if not page["more"]:
            break
    ids: list[str] = []
    while True:
        page = ask_venue("venue_sim", "orders_received", after=len(ids))
        ids += page["ids"]
        if not page["more"]:
            break
    duplicates = ask_venue("venue_sim", "status")["stats"]["duplicate_ids"]
    return {"fills": fills, "client_order_ids": ids, "duplicate_ids": duplicates, "session": session}


def em_positions(d: Daemon) -> dict[str, dict[str, Any]]:
    return ask(d, "exchange_manager", "positions")["positions"]


def em_open_orders(d: Daemon) -> list[dict[str, Any]]:
    return [o for o in ask(d, "exchange_manager", "orders")["orders"] if o["status"] in OPEN_STATUSES]


def em_stats(d: Daemon) -> dict[str, Any]:
    return ask(d, "exchange_manager", "status")["stats"]


def wait_venue_flat(d: Daemon, timeout: float = 10.0) -> None:
    """Wait until the venue holds no open order and no position."""
    wait_until(lambda: not venue_positions(d) and not venue_open_orders(d), timeout,
               ignore=(CommandTimeout,),
               message=lambda: f"venue positions {venue_positions(d)}, open orders {venue_open_orders(d)}")


def submit(d: Daemon, symbol: str, side: str, qty: float, **extra: Any) -> proto.Reply:
    """``submit_order`` at the exchange manager; returns the reply (ok or refused)."""
    return d.call("exchange_manager", "submit_order", timeout_s=2.0, retries=2,
                  symbol=symbol, side=side, qty=qty, **extra)


def wait_routed(d: Daemon, symbol: str, timeout: float = 10.0) -> None:
    """Wait until the data router has passed on market data for ``symbol`` (so the exchange manager
    and the engine have had a price for it)."""
    wait_until(lambda: symbol in ask(d, "data_router", "status")["stats"]["symbols"], timeout,
               ignore=(CommandTimeout,))
    time.sleep(0.05)  # one more quote's worth: the router's subscribers got it too


def incident_files(d: Daemon) -> tuple[list[Path], list[Path]]:
    """The incident reports written so far: (JSON files, Markdown files), oldest first."""
    files = sorted(d.incidents_dir.glob("incident_*")) if d.incidents_dir.exists() else []
    return [p for p in files if p.suffix == ".json"], [p for p in files if p.suffix == ".md"]


def wait_gate_open(d: Daemon, timeout: float = 10.0) -> None:
    """The exchange manager's gate lets opening orders through: it has heard the session go LIVE (a
    moment after the orchestrator says so, by its state event or heartbeat)."""
    wait_until(lambda: em_stats(d)["trading_allowed"], timeout, ignore=(CommandTimeout,),
               message=lambda: d.diagnostics())


def place_resting_orders(d: Daemon, open_at_venue: Any = None) -> list[str]:
    """Two SOL-USD limit orders (about 150) away from the touch, one each side (inside the gate's
    10 % price collar), placed through the exchange manager; they rest at the venue until cancelled.
    Returns their client order ids. ``open_at_venue()``: the venue's open orders as the caller reads
    them (default: the native face's ``open_orders``)."""
    reader = open_at_venue or (lambda: venue_open_orders(d))
    ids = []
    wait_gate_open(d)
    for symbol, side, price in (("SOL-USD", "buy", 140.0), ("SOL-USD", "sell", 160.0)):
        wait_routed(d, symbol)
        reply = submit(d, symbol, side, 1.0, order_type="limit", limit_price=price, strategy="itest")
        assert reply.ok, reply.error
        ids.append(reply.result["client_order_id"])
    wait_until(lambda: set(ids) <= {o["client_order_id"] for o in reader()}, 5,
               ignore=(CommandTimeout,) if open_at_venue else ())
    return ids


def open_position(d: Daemon, symbol: str = "SOL-USD", qty: float = 0.5) -> None:
    """Buy ``qty`` at market through the exchange manager and wait until the venue holds it: a
    position the demo strategies (which trade other symbols) never close."""
    wait_gate_open(d)
    wait_routed(d, symbol)
    held = venue_positions(d).get(symbol, 0.0)
    reply = submit(d, symbol, "buy", qty, strategy="itest")
    assert reply.ok, reply.error
    wait_until(lambda: abs(venue_positions(d).get(symbol, 0.0) - held - qty) < 1e-9
               and abs(em_positions(d).get(symbol, {}).get("qty", 0.0) - held - qty) < 1e-9, 5)


def wait_trading_with_positions(d: Daemon) -> dict[str, Any]:
    """Wait until the session is LIVE and the strategies have traded, then hold a position of the
    test's own (``open_position``: the strategies' positions may be back to zero at any moment);
    return the exchange manager's positions."""
    d.wait_state("live", timeout=30)
    wait_until(lambda: em_stats(d)["fills"] > 0, 30, interval=0.1, message=lambda: str(d.stats_json()))
    open_position(d)
    return em_positions(d)


def ensure_live(d: Daemon, timeout: float = 30.0) -> None:
    """Bring the session back to LIVE from wherever a previous test left it (not SHUTDOWN)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = d.state()
        if state == "live":
            return
        if state == "failsafe":
            wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 15, ignore=(CommandTimeout,))
            d.call("orchestrator", "reset", reason="test: back to live")
        elif state == "ready":
            d.call("orchestrator", "open", reason="test: back to live")
        elif state == "degraded":
            d.call("orchestrator", "recover")
        elif state == "shutdown":
            raise AssertionError("the session was shut down; cannot bring it back to live")
        time.sleep(0.1)
    raise AssertionError(f"not live within {timeout}s: {d.state()}")


def tradectl_json(d: Daemon, *args: str) -> Any:
    res = d.tradectl(*args, "--json")
    assert res.returncode == 0, f"tradectl {' '.join(args)} --json: {res.returncode}\n{res.stderr}"
    return json.loads(res.stdout)


# -- replay files ----------------------------------------------------------------------------------

REPLAY_EPOCH = dt.datetime(2013, 1, 1, 22, 0, 0, tzinfo=dt.timezone.utc)


def write_quotes_csv(path: Path, rows: Iterable[tuple[float, float]], *, start: dt.datetime = REPLAY_EPOCH,
                     step_s: float = 1.0) -> Path:
    """A ``timestamp,bid,ask`` file (the TrueFX layout the replay recognises), one row per step."""
    lines = ["timestamp,bid,ask"]
    for i, (bid, ask) in enumerate(rows):
        stamp = start + dt.timedelta(seconds=i * step_s)
        lines.append(f"{stamp.isoformat(sep=' ', timespec='microseconds')},{bid!r},{ask!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


def read_quotes_csv(path: Path) -> list[tuple[float, float]]:
    rows = []
    with path.open() as handle:
        next(handle)
        for line in handle:
            parts = line.strip().split(",")
            if len(parts) >= 3:
                rows.append((float(parts[1]), float(parts[2])))
    return rows


# -- pytest glue shared by the suites' conftest.py ------------------------------------------------

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# The demo strategies, tuned to decide often on the synthetic feed (the defaults trade every few
# seconds; a test wants fills within a few seconds of the session opening).
FAST_STRATEGIES: list[dict[str, Any]] = [
    {"kind": "mean_reversion", "name": "meanrev", "symbol": "BTC-USD", "window": 10, "entry_bps": 1.0,
     "min_interval_s": 0.2, "qty": 0.01, "max_position": 0.05},
    {"kind": "market_maker", "name": "mm", "symbol": "ETH-USD", "half_spread_bps": 1.0, "requote_bps": 2.0,
     "qty": 0.1, "max_position": 0.5},
]


def daemons_of(item: Any) -> list[Daemon]:
    """Every ``Daemon`` a test item uses through its fixtures (directly or via a factory's ``made``)."""
    found: list[Daemon] = []
    for value in getattr(item, "funcargs", {}).values():
        for d in [value, *getattr(value, "made", ())]:
            if isinstance(d, Daemon) and all(d is not seen for seen in found):
                found.append(d)
    return found


def attach_diagnostics(item: Any, report: Any) -> None:
    """On a failed test, put the tail of every program's log of its daemons into the report."""
    if not report.failed or report.when not in ("setup", "call"):
        return
    for d in daemons_of(item):
        if not d._closed:
            report.sections.append((f"daemon {d.root} logs", d.diagnostics(40)))


class DaemonFactory:
    """``make(config)`` → a started ``Daemon``; every daemon made is closed by ``close_all``."""

    def __init__(self, base: Mapping[str, Any]) -> None:
        self._base = base
        self.made: list[Daemon] = []

    def __call__(self, config: Mapping[str, Any] | None = None, **options: Any) -> Daemon:
        d = open_daemon(merged(self._base, config or {}), start=False, **options)
        self.made.append(d)
        d.start()
        wait_serving(d)
        return d

    def close_all(self) -> list[int]:
        leftovers = []
        for d in self.made:
            d.close()
            leftovers += d.leftover_processes()
        return leftovers


def suite_fixtures(base_config: Mapping[str, Any]) -> tuple[Any, Any]:
    """The two fixtures an end-to-end suite's conftest exposes, for its ``BASE_CONFIG``:

    ``module_daemon``: one daemon per module, with the module's ``MODULE_CONFIG`` merged in;
    ``make_daemon``: a factory for daemons of one test. Both check nothing is left running.
    """
    import pytest

    @pytest.fixture(scope="module")
    def module_daemon(request: pytest.FixtureRequest) -> Any:
        d = open_daemon(merged(base_config, getattr(request.module, "MODULE_CONFIG", {})))
        try:
            yield d
        finally:
            d.close()
        assert not d.leftover_processes(), "processes left behind"

    @pytest.fixture
    def make_daemon() -> Any:
        factory = DaemonFactory(base_config)
        try:
            yield factory
        finally:
            leftovers = factory.close_all()
        assert not leftovers, f"processes left behind: {leftovers}"

    return module_daemon, make_daemon
