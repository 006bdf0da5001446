"""An open order in the book of record on a connector the settings no longer name (the daemon was run
on another venue's settings with the same state directory, as `make run` after a ccxt run): nothing
here can cancel it, reconcile it or hear its fills. Counted as working on its side, it made every
flatten of that side one order short, forever: FAILSAFE never verified flat (seen with `make run`
after `TRADING_CONFIG=deploy/ccxt-sim.toml make run`). It must not keep FAILSAFE from getting flat.
"""

from __future__ import annotations

import time

from integration.daemon import Daemon, wait_until
from integration.e2e import em_positions, orchestrator_status, venue_positions, wait_trading_with_positions
from proto.commands import NewOrderArgs
from services.exchange_manager.journal import OrderJournal
from services.exchange_manager.order_book import OrderRecord


def test_an_order_of_a_connector_no_longer_configured_does_not_keep_failsafe_from_flat(make_daemon) -> None:
    d: Daemon = make_daemon()
    positions = wait_trading_with_positions(d)
    symbol, pos = next((s, p["qty"]) for s, p in positions.items() if abs(p["qty"]) > 1e-9)
    # a ghost on the flattening side, as large as the position: counted, it leaves nothing to flatten
    res = d.supervisorctl("stop", d.qualified("exchange_manager"), timeout=60)
    assert res.returncode == 0, res.stdout
    journal = OrderJournal(d.state_dir / "exchange_manager.sqlite", fsync_per_order=True)
    journal.save_order(OrderRecord(order=NewOrderArgs(
        client_order_id="ghost-1", symbol=symbol, side="buy" if pos < 0 else "sell", qty=abs(pos),
        order_type="market", limit_price=None, strategy="mm", connector="gone"), created_ns=time.time_ns()))
    journal.close()
    d.start_programs("exchange_manager")
    assert any(o["client_order_id"] == "ghost-1" for o in d.request("exchange_manager", "orders")["orders"])
    assert d.state() in ("live", "degraded")  # the stop of the exchange manager may have degraded it
    assert d.request("orchestrator", "failsafe", reason="ghost order test")["state"] == "failsafe"
    wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 20,
               message=lambda: f"not flat: venue {venue_positions(d)}, book {em_positions(d)}")
    assert venue_positions(d) == {}
    exchange_log = d.program_log("exchange_manager").read_text()
    assert "ghost-1" in exchange_log and "no longer" in exchange_log  # the operator is told, once
