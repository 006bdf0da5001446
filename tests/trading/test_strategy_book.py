"""A strategy's position survives what its engine does not see: its own restart (kill -9), and a
FAILSAFE's flatten (orders of no strategy). The engine takes each strategy's positions and open
orders from the exchange manager's book of record (``strategy_book``, the Clone pattern) at start,
after a loss on the streams, and before trading resumes; without that a restarted strategy holding
a position believes itself flat and trades past its own limit.

The strategy here (a probe that never decides) holds a position the test gives it: orders sent to
the exchange manager under its name, which the book attributes to it.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import ask, ensure_live, orchestrator_status

QUIET_PROBE = {"kind": "probe", "name": "quiet", "symbol": "BTC-USD", "every_n": 1_000_000_000, "qty": 0.001}
MODULE_CONFIG = {"engine": {"strategies": [QUIET_PROBE]}}


def _engine_position(d: Daemon) -> float:
    return ask(d, "engine", "status")["stats"]["strategies"]["quiet"]["position"]


def _book(d: Daemon) -> dict:
    return ask(d, "exchange_manager", "strategy_book")["strategies"]


def test_a_restarted_engine_takes_its_strategies_positions_from_the_book(module_daemon: Daemon) -> None:
    d = module_daemon
    d.wait_state("live", timeout=30)
    # the gate hears the session open a moment after the orchestrator says LIVE (its heartbeat)
    wait_until(lambda: ask(d, "exchange_manager", "status")["stats"]["trading_allowed"], 10, ignore=(CommandTimeout,))

    def bought() -> Any:
        # the gate refuses an opening order until it has a price: the first quote may come after LIVE
        reply = d.call("exchange_manager", "submit_order", timeout_s=2, symbol="BTC-USD", side="buy", qty=0.02,
                       strategy="quiet")
        return None if not reply.ok and reply.error.startswith("no market price") else reply

    reply = wait_until(bought, 10, ignore=(CommandTimeout,))
    assert reply.ok, reply.error
    wait_until(lambda: abs(_engine_position(d) - 0.02) < 1e-9, 10, ignore=(CommandTimeout,))
    assert _book(d)["quiet"]["positions"] == {"BTC-USD": 0.02}
    resting = d.call("exchange_manager", "submit_order", timeout_s=2, symbol="BTC-USD", side="buy", qty=0.001,
                     order_type="limit", limit_price=37_000.0, strategy="quiet")
    assert resting.ok, resting.error
    wait_until(lambda: [o["client_order_id"] for o in _book(d)["quiet"]["open_orders"]]
               == [resting.result["client_order_id"]], 5, ignore=(CommandTimeout,))

    engine = d.pid_of("engine")
    os.kill(engine, signal.SIGKILL)
    d.wait_respawned("engine", engine, timeout=20)
    # the new engine never saw that fill: its strategy's position comes from the book
    wait_until(lambda: ask(d, "engine", "status")["stats"]["book_sync"]["synced"], 15,
               ignore=(CommandTimeout, KeyError))
    assert abs(_engine_position(d) - 0.02) < 1e-9
    assert d.call("exchange_manager", "cancel_order", client_order_id=resting.result["client_order_id"]).ok


def test_after_a_failsafe_flatten_the_strategies_are_flat_when_trading_resumes(module_daemon: Daemon) -> None:
    d = module_daemon
    # the engine killed before left the session DEGRADED: recover now rather than wait 30 s for
    # auto_recover_after_s
    ensure_live(d)
    before = _book(d).get("quiet", {}).get("positions", {}).get("BTC-USD", 0.0)
    reply = d.call("exchange_manager", "submit_order", timeout_s=2, symbol="BTC-USD", side="buy", qty=0.01,
                   strategy="quiet")
    assert reply.ok, reply.error
    wait_until(lambda: abs(_engine_position(d) - before - 0.01) < 1e-9, 10, ignore=(CommandTimeout,))

    assert d.call("orchestrator", "failsafe", reason="test: flatten the strategies").ok
    wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 20, ignore=(CommandTimeout,))
    # the flatten's fills close the strategy's position in the book (they are not the strategy's own)
    assert _book(d).get("quiet", {}).get("positions", {}) == {}
    snapshots = ask(d, "engine", "status")["stats"]["book_sync"]["snapshots"]
    assert d.call("orchestrator", "reset", reason="test").ok
    assert d.call("orchestrator", "open", reason="test").ok
    d.wait_state("live", timeout=10)
    # trading resumed: the engine took the book again before deciding anything
    wait_until(lambda: ask(d, "engine", "status")["stats"]["book_sync"]["snapshots"] > snapshots, 10,
               ignore=(CommandTimeout,))
    assert _engine_position(d) == 0.0
