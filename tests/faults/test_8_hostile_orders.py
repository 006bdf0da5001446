"""Hostile orders and hostile strings against a real daemon (issue 11, items 5 and 6).

**Nonsense orders.** Each order below is sent to the exchange manager's ``submit_order`` AND
straight to the venue's ``new_order`` (a peer that skips the gate). Each must be refused by the
check named in the table, with its reason and its counter (``gate.refusals[kind]`` and a governance
event ``order_refused.<kind>`` at the gate; the command server's ``rejected['invalid']`` where
decoding refuses it; the venue's ``rejected`` and its reason otherwise); nothing reaches the venue
from the gate, nothing fills, every process keeps its pid, the session keeps its state and its
transition count. A reducing flatten still passes: a position below the minimum notional is closed
by reduce-only orders, which neither the gate nor the venue hold to the minimums.

**Hostile strings.** A value with a newline (and ``\\r``, ``\\x1b[2J``, ``\\u2028``, NUL...) in
every string field an operator or a peer can send (the session's failsafe/reset/open/close/
shutdown reasons, the gate's mode reason, a symbol, a strategy, a connector, a client order id, a
fault's symbol, a subscription, a command id) must not forge a log line: afterwards every line of
every text log under the daemon's log dir matches its log's format from its first character,
holds no control character, and no line starts with the forged record's timestamp; the values did
reach the logs, escaped.

The module's daemon runs no strategy, so every order is the test's own.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

import proto
from bus import CommandTimeout, make_socket
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    Collector,
    ask,
    em_positions,
    em_stats,
    ensure_live,
    submit,
    venue_fills,
    venue_positions,
    wait_routed,
)

from .harness import FIGURES

MODULE_CONFIG = {"engine": {"strategies": []}}

FORGED_TS = "1999-01-01 00:00:00,000"
FORGED = f"{FORGED_TS} - LiveTradingOrchestrator - CRITICAL - FORGED"
HOSTILE_TEXT = [f"x\n{FORGED}", f"x\r{FORGED}", f"\x1b[2J\x1b[H{FORGED}", f"x\u2028{FORGED}",
                f"x\x00\x85\x0b{FORGED}"]
INVALID = "invalid"  # refused by decoding: proto.fields

# (name, order args, the gate's refusal kind, what the venue answers: "invalid" or a reason prefix)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("tiny quantity", {"symbol": "BTC-USD", "qty": 5e-324}, "min_qty", "min_qty: quantity"),
    ("huge quantity", {"symbol": "BTC-USD", "qty": 1e308}, INVALID, INVALID),
    ("infinite quantity", {"symbol": "BTC-USD", "qty": math.inf}, INVALID, INVALID),
    ("NaN quantity", {"symbol": "BTC-USD", "qty": math.nan}, INVALID, INVALID),
    ("zero quantity", {"symbol": "BTC-USD", "qty": 0.0}, INVALID, INVALID),
    ("negative quantity", {"symbol": "BTC-USD", "qty": -0.01}, INVALID, INVALID),
    ("quantity off the lot grid", {"symbol": "BTC-USD", "qty": 0.000015}, "lot_size", "lot_size:"),
    ("notional below the minimum", {"symbol": "SOL-USD", "qty": 0.005}, "min_notional", "min_notional:"),
    ("limit price 1e308", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit", "limit_price": 1e308},
     INVALID, INVALID),
    ("limit price 5e-324", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit", "limit_price": 5e-324},
     "tick_size", "tick_size:"),
    ("limit price inf", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit", "limit_price": math.inf},
     INVALID, INVALID),
    ("limit price NaN", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit", "limit_price": math.nan},
     INVALID, INVALID),
    ("limit price off the tick grid", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit",
                                       "limit_price": 39_000.005}, "tick_size", "tick_size:"),
    ("buy limit 50 % above the market", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit",
                                         "limit_price": 60_000.0}, "price_collar", "price_band:"),
    ("sell limit 50 % below the market", {"symbol": "BTC-USD", "side": "sell", "qty": 0.01, "order_type": "limit",
                                          "limit_price": 20_000.0}, "price_collar", "price_band:"),
    ("limit order without a price", {"symbol": "BTC-USD", "qty": 0.01, "order_type": "limit"},
     "bad_price", "limit order without a limit price"),
    ("market order with a price", {"symbol": "BTC-USD", "qty": 0.01, "limit_price": 40_000.0},
     "bad_price", "market order with a limit price"),
    ("unknown symbol NOPE-USD", {"symbol": "NOPE-USD", "qty": 1.0}, "unknown_symbol", "unknown symbol NOPE-USD"),
    ("empty symbol", {"symbol": "", "qty": 0.01}, INVALID, INVALID),
    ("symbol with NUL", {"symbol": "BTC-USD\x00", "qty": 0.01}, INVALID, INVALID),
    ("symbol of 5,000 characters", {"symbol": "B" * 5_000, "qty": 0.01}, INVALID, INVALID),
    ("symbol with a newline", {"symbol": f"BTC-USD\n{FORGED}", "qty": 0.01}, INVALID, INVALID),
    ("lower-case symbol", {"symbol": "btc-usd", "qty": 0.01}, INVALID, INVALID),
]
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def governance(module_daemon: Daemon) -> Iterator[Collector]:
    with Collector(module_daemon, "exchange_manager", [proto.topics.GOVERNANCE]) as collector:
        yield collector


@pytest.fixture(scope="module")
def live(module_daemon: Daemon) -> Daemon:
    d = module_daemon
    d.wait_state("live", timeout=30)
    wait_until(lambda: em_stats(d)["trading_allowed"] and em_stats(d)["reconciled"], 15, ignore=(CommandTimeout,))
    for symbol in ("BTC-USD", "SOL-USD"):
        wait_routed(d, symbol)
    return d


def _pids(d: Daemon) -> dict[str, int]:
    return {p: d.pid_of(p) for p in d.programs}


def _invalid_count(d: Daemon, service: str) -> int:
    return ask(d, service, "status")["bus"]["commands"]["rejected"].get("invalid", 0)


def _world(d: Daemon) -> dict[str, Any]:
    """What no refused order may change."""
    fills = venue_fills(d)
    stats = ask(d, "orchestrator", "stats")
    return {"venue fills": len(fills["fills"]), "venue positions": venue_positions(d),
            "orders submitted at the gate": em_stats(d)["orders_submitted"],
            "session": (stats["state"], stats["transitions"]), "pids": _pids(d)}


@pytest.mark.parametrize(("name", "order", "gate_kind", "venue_answer"), CASES, ids=[c[0] for c in CASES])
def test_a_nonsense_order_is_refused_at_the_gate_and_at_the_venue(
        live: Daemon, governance: Collector, name: str, order: dict[str, Any], gate_kind: str,
        venue_answer: str) -> None:
    d = live
    args = {"side": "buy", **order}
    before = _world(d)
    refusals = em_stats(d)["gate"]["refusals"].get(gate_kind, 0)
    invalid = {s: _invalid_count(d, s) for s in ("exchange_manager", "venue_sim")}
    seen = len(governance.bodies(proto.GovernanceEvent))

    reply = submit(d, **args)
    assert not reply.ok, f"{name}: the gate let it through: {reply.result}"
    if gate_kind == INVALID:
        assert reply.error.startswith("invalid: submit_order: "), reply.error
        assert _invalid_count(d, "exchange_manager") == invalid["exchange_manager"] + 1
    else:
        assert em_stats(d)["gate"]["refusals"].get(gate_kind, 0) == refusals + 1, em_stats(d)["gate"]
        event = wait_until(lambda: next((e for e in governance.bodies(proto.GovernanceEvent)[seen:]
                                         if e.kind == f"order_refused.{gate_kind}"), None), 5)
        assert event.reason == reply.error and event.symbol == args["symbol"]

    venue_rejected = ask(d, "venue_sim", "status")["stats"]["rejected"]
    cid = f"hostile-{next(_ids)}"
    # as the exchange manager (the only identity the venue takes orders from): past the gate
    direct = d.call("venue_sim", "new_order", timeout_s=2.0, retries=2, identity="exchange_manager",
                    client_order_id=cid, **args)
    if venue_answer == INVALID:
        assert not direct.ok and direct.error.startswith("invalid: new_order: "), direct
        assert _invalid_count(d, "venue_sim") == invalid["venue_sim"] + 1
    else:
        assert direct.ok, direct.error
        update = direct.result["order"]
        assert update["status"] == "rejected" and update["reason"].startswith(venue_answer), update
        assert ask(d, "venue_sim", "status")["stats"]["rejected"] == venue_rejected + 1

    after = _world(d)
    assert after == before, f"{name}: something changed: {before} -> {after}"
    assert all(f["client_order_id"] != cid for f in venue_fills(d)["fills"])
    FIGURES.cases += 1
    FIGURES.faults += 2
    FIGURES.faults_survived += 2
    FIGURES.invariants += 6


def _hold(d: Daemon, symbol: str, qty: float) -> None:
    """A long position of ``qty`` (from flat), below the minimum notional: bought above it, then
    reduced by a reduce-only order, which is not held to the minimums."""
    assert abs(venue_positions(d).get(symbol, 0.0)) < 1e-9
    bought = 2 * qty

    def position_is(target: float) -> bool:
        return (abs(venue_positions(d).get(symbol, 0.0) - target) < 1e-9
                and abs(em_positions(d).get(symbol, {}).get("qty", 0.0) - target) < 1e-9)

    assert (reply := submit(d, symbol, "buy", bought, strategy="itest")).ok, reply.error
    wait_until(lambda: position_is(bought), 5)
    assert (reply := submit(d, symbol, "sell", bought - qty, reduce_only=True, strategy="itest")).ok, reply.error
    wait_until(lambda: position_is(qty), 5)


def test_a_reducing_flatten_passes_below_the_minimums(live: Daemon) -> None:
    """A position smaller than the minimum notional (0.006 SOL, about 0.9 USD) can still be closed:
    the gate does not hold a reducing order to the grid, the minimums or the collar, and the venue
    does not hold a reduce-only order to its minimums."""
    d = live
    symbol = "SOL-USD"
    _hold(d, symbol, 0.006)
    # an opening order of that size is refused for its notional; closing it is not
    refused = submit(d, symbol, "buy", 0.006)
    assert not refused.ok and "min_notional" not in refused.error and "is below the minimum" in refused.error
    assert ask(d, "exchange_manager", "flatten", symbol=symbol)["orders"]
    wait_until(lambda: abs(venue_positions(d).get(symbol, 0.0)) < 1e-9
               and abs(em_positions(d).get(symbol, {}).get("qty", 0.0)) < 1e-9, 5,
               message=lambda: f"venue {venue_positions(d)}, book {em_positions(d)}")
    FIGURES.cases += 1
    FIGURES.invariants += 2


def test_the_instruments_come_from_the_venue_on_every_connection(live: Daemon) -> None:
    """The exchange manager serves the venue's own list, asks for it again when the link comes back
    (a venue may return with other markets), and reports itself reconciled only with it; the engine
    has taken it from the exchange manager."""
    d = live
    venue_list = msgspec.convert(ask(d, "venue_sim", "instruments"), proto.InstrumentList)
    book = msgspec.convert(ask(d, "exchange_manager", "instruments"), proto.InstrumentBook)
    assert book.pending == [] and book.connectors[book.default_connector] == venue_list
    assert {s.symbol for s in venue_list.instruments} == {"BTC-USD", "ETH-USD", "SOL-USD"}
    wait_until(lambda: ask(d, "engine", "status")["stats"]["instruments"]["loaded"], 10)
    cli = d.tradectl("instruments", "--json")
    assert cli.returncode == 0 and msgspec.convert(json.loads(cli.stdout), proto.InstrumentBook) == book, cli.stderr
    table = d.tradectl("instruments")
    assert table.returncode == 0 and "SOL-USD" in table.stdout and "0.001" in table.stdout, table.stdout
    loads = em_stats(d)["instruments"]["loads"]
    assert ask(d, "venue_sim", "fault", fault="drop_connection", duration_s=1.0)
    wait_until(lambda: (s := em_stats(d))["instruments"]["loads"] > loads and not s["instruments"]["pending"]
               and s["reconciled"], 20, ignore=(CommandTimeout,), message=lambda: str(em_stats(d)))
    ensure_live(d)
    FIGURES.cases += 1
    FIGURES.faults += 1
    FIGURES.faults_survived += 1
    FIGURES.invariants += 3


# -- hostile strings ---------------------------------------------------------------------------------

SESSION_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - LiveTradingOrchestrator - "
                          r"(INFO|WARNING|ERROR|CRITICAL) - ")
PROGRAM_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
SUPERVISORD_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) ")
ALERT_LINE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (EXITED|BACKOFF|FATAL) ")


def _raw_status(d: Daemon, service: str, command_id: str) -> proto.Reply:
    """A ``status`` command under a hostile command id, on a DEALER of the test's own."""
    ctx = zmq.Context.instance()
    sock = make_socket(ctx, zmq.DEALER, d.bus)
    try:
        d.security().connect(sock, d.endpoints.cmd(service), service)
        sock.send(proto.encode("itest", 1, 1, time.time_ns(), proto.Command(id=command_id, name="status")))
        assert sock.poll(5_000), f"{service} did not answer a command id {command_id!r}"
        reply = proto.decode(sock.recv()).body
        assert isinstance(reply, proto.Reply)
        return reply
    finally:
        sock.close(linger=0)


def _send_hostile_fields(d: Daemon, value: str) -> int:
    """Every free string an operator or a peer can put in a command, outside the session's own;
    returns how many commands carried it."""
    refused = [
        ("exchange_manager", "submit_order", {"symbol": value, "side": "buy", "qty": 0.01}),
        ("exchange_manager", "submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 0.01, "strategy": value}),
        ("exchange_manager", "submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 0.01, "connector": value}),
        ("exchange_manager", "cancel_order", {"client_order_id": value}),
        ("exchange_manager", "flatten", {"symbol": value}),
        ("venue_sim", "new_order", {"client_order_id": value, "symbol": "BTC-USD", "side": "buy", "qty": 0.01}),
        ("venue_sim", "fault", {"fault": "jump_price", "symbol": value}),
        ("data_router", "subscribe", {"symbols": [value]}),
    ]
    for service, command, args in refused:
        # the venue's order entry is the exchange manager's alone: sent as it, to reach the arguments' check
        identity = "exchange_manager" if command == "new_order" else "itest"
        reply = d.call(service, command, timeout_s=2.0, retries=2, identity=identity, **args)
        assert not reply.ok and reply.error.startswith("invalid: "), (service, command, reply)
    # free text is accepted as it is (and escaped where it is logged)
    assert d.call("exchange_manager", "set_mode", timeout_s=2.0, retries=2, mode="normal", reason=value).ok
    assert d.call("engine", "enable_trading", timeout_s=2.0, retries=2, reason=value).ok
    services = ("orchestrator", "exchange_manager", "venue_sim", "data_router", "engine", "safety")
    for service in services:
        assert _raw_status(d, service, value).id == value
    return len(refused) + 2 + len(services)


def _text_logs(log_dir: Path) -> list[Path]:
    """Every text log: not the archive, not the JSON reports (documents, json.dumps in ASCII), and not
    supervisord's capture of the event listener's stdout, which is its protocol channel (READY, RESULT)."""
    return sorted(p for p in log_dir.rglob("*") if p.is_file() and not p.name.endswith((".tar.gz", ".json"))
                  and "-stdout---supervisor-" not in p.name)


def _check_file(path: Path, log_dir: Path) -> int:
    """Every line of one text log is a line of its format; returns how many lines mention FORGED."""
    text = path.read_text(encoding="utf-8", errors="strict")
    by_newline = text.split("\n") if text else []
    if text.endswith("\n"):
        by_newline.pop()
    lines = text.splitlines()
    assert lines == by_newline, f"{path}: a line break other than \\n"
    rel = path.relative_to(log_dir)
    for n, line in enumerate(lines, 1):
        where = f"{rel}:{n}: {line[:160]!r}"
        assert line.isprintable(), f"control character in {where}"
        assert not line.startswith(FORGED_TS), f"forged line in {where}"
        if rel.parts[0] == "live" and ".log" in path.name:
            assert SESSION_LINE.match(line), where
        elif rel.parts[0] == "live":  # the JSON lines
            json.loads(line)
        elif path.name.startswith("supervisord.log"):
            assert SUPERVISORD_LINE.match(line), where
        elif path.name.startswith("process_alerts.log"):
            assert ALERT_LINE.match(line), where
        elif ".log" in path.name:
            assert PROGRAM_LINE.match(line), where
    return sum("FORGED" in line for line in lines)


@pytest.mark.slow
def test_no_value_forges_a_log_line(live: Daemon) -> None:
    """Runs last: it takes the session through FAILSAFE, reset, open, close and a new session's
    shutdown, each with a hostile reason."""
    d = live
    ensure_live(d)
    wait_until(lambda: em_stats(d)["trading_allowed"] and em_stats(d)["gate"]["mode"] == "normal", 15)
    sent = sum(_send_hostile_fields(d, value) for value in HOSTILE_TEXT) + 5  # and the session's five below
    _hold(d, "SOL-USD", 0.006)  # a position below the minimum notional, for the failsafe to flatten

    failsafe, reset, open_, close, shutdown = HOSTILE_TEXT
    assert ask(d, "orchestrator", "failsafe", reason=failsafe)
    wait_until(lambda: ask(d, "orchestrator", "status")["failsafe_pending"] is None, 40, interval=0.1)
    wait_until(lambda: not venue_positions(d), 10, message=lambda: f"not flat: {venue_positions(d)}")
    wait_until(lambda: d.call("orchestrator", "reset", timeout_s=2.0, reason=reset).ok, 20, interval=0.5,
               ignore=(CommandTimeout,))
    wait_until(lambda: d.state() == "ready" and em_stats(d)["reconciled"], 15, ignore=(CommandTimeout,))
    assert ask(d, "orchestrator", "open", reason=open_)["state"] == "live"
    assert ask(d, "orchestrator", "close", reason=close)["state"] == "shutdown"
    # a new session (the orchestrator restarted), ended by shutdown
    res = d.supervisorctl("restart", d.qualified("orchestrator"))
    assert res.returncode == 0, res.stdout + res.stderr
    d.wait_state("live", timeout=30)
    assert ask(d, "orchestrator", "shutdown", reason=shutdown)["state"] == "shutdown"
    wait_until(lambda: em_stats(d)["trading_allowed"] is False, 5)

    files = _text_logs(d.log_dir)
    kinds = {p.relative_to(d.log_dir).parts[0] for p in files}
    assert {"live", "incidents", "reports"} <= kinds, files
    mentions = {str(p.relative_to(d.log_dir)): _check_file(p, d.log_dir) for p in files}
    # the values did reach the logs (escaped): the test is not vacuous
    for prefix in ("live/live_trading_", "live/governance_events_", "live/events_", "incidents/", "reports/"):
        assert any(m and name.startswith(prefix) for name, m in mentions.items()), (prefix, mentions)
    assert any(m for name, m in mentions.items() if "/" not in name), mentions  # a program log
    FIGURES.cases += 1
    FIGURES.faults += sent
    FIGURES.faults_survived += sent
    FIGURES.invariants += len(files)
