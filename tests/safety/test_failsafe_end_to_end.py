"""A critical safety event while trading, end to end: a 25% price jump on the synthetic feed is a
critical data anomaly with the default thresholds (critical at 15%), so the session goes to
FAILSAFE; the failsafe sequence leaves the venue with no open order and no position, writes the
incident report and posts the alert to a webhook; and no opening order gets through afterwards,
even once the engine and the exchange manager have been restarted.
"""

from __future__ import annotations

import json
import re
import time

import proto
from bus import CommandTimeout
from integration.daemon import Daemon, wait_until
from integration.e2e import (
    OPEN_STATUSES,
    Collector,
    WebhookSink,
    ask,
    em_open_orders,
    em_positions,
    em_stats,
    incident_files,
    orchestrator_status,
    place_resting_orders,
    submit,
    venue_fills,
    venue_open_orders,
    venue_positions,
    wait_trading_with_positions,
)

STEP_ORDER = [
    "stop new orders: disable engine",
    "stop new orders: close the gate",
    "cancel every open order (attempt 1)",
    "flatten every position (attempt 1)",
    "verify flat at the venue (attempt 1)",
]


def test_price_jump_failsafe_flattens_reports_alerts_and_stays_closed(make_daemon) -> None:
    with WebhookSink() as sink:
        d: Daemon = make_daemon({"orchestrator": {"failsafe": {"webhook_url": sink.url}}})
        wait_trading_with_positions(d)
        resting = place_resting_orders(d)
        assert venue_positions(d), "nothing to flatten at the venue"
        with Collector(d, "safety", [proto.topics.SAFETY]) as safety, \
                Collector(d, "orchestrator", [proto.topics.STATE]) as states, \
                Collector(d, "venue_sim", [proto.topics.audit("venue_sim")]) as venue_calls:
            assert ask(d, "venue_sim", "fault", fault="jump_price", symbol="BTC-USD", value=25.0)
            d.wait_state("failsafe", timeout=10)
            wait_until(lambda: orchestrator_status(d)["failsafe_pending"] is None, 15)
            # the critical event that did it
            critical = wait_until(lambda: [e for e in safety.bodies(proto.SafetyEvent)
                                           if e.severity is proto.Severity.CRITICAL], 5)
            assert critical[0].event_type is proto.SafetyEventType.DATA_ANOMALY
            assert critical[0].symbol == "BTC-USD"
            assert critical[0].evidence["move_pct"] >= 24.0, critical[0]
            moves = [(s.old.value, s.new.value) for s in states.bodies(proto.StateChanged)]
            assert moves[:2] == [("live", "degraded"), ("degraded", "failsafe")], moves

        # the venue: nothing open, nothing held
        assert venue_open_orders(d) == []
        assert venue_positions(d) == {}
        assert em_open_orders(d) == []
        assert all(abs(p["qty"]) < 1e-9 for p in em_positions(d).values()), em_positions(d)
        stats = d.stats_json()
        assert stats["failsafe_activations"] == 1 and stats["state"] == "failsafe"

        # the incident report, JSON and Markdown
        (json_path,), (md_path,) = incident_files(d)
        report = json.loads(json_path.read_text())
        assert "critical safety event" in report["trigger"] and "Price jump" in report["trigger"], report["trigger"]
        assert report["ok"] is True, report["steps"]
        assert report["finished_at"] >= report["started_at"]
        names = [s["name"] for s in report["steps"]]
        assert names[:len(STEP_ORDER)] == STEP_ORDER, names
        for step in report["steps"]:
            assert step["ok"] is True and step["duration_ms"] >= 0 and step["detail"], step
        assert "venue confirms no open order and no position" in report["steps"][-1]["detail"]
        # one cancel_all reaches the venue per round (the flatten after the cancel step does not cancel again)
        rounds = [n for n in names if n.startswith("cancel every open order")]
        cancels = [a for a in venue_calls.bodies(proto.CommandAudit) if a.name == "cancel_all" and a.phase == "request"]
        assert len(cancels) == len(rounds) == 1, (cancels, names)
        timeline = [e["what"] for e in report["timeline"]]
        assert any("safety critical data_anomaly BTC-USD" in w for w in timeline), timeline
        assert any("LIVE → DEGRADED" in w for w in timeline) and any("DEGRADED → FAILSAFE" in w for w in timeline), timeline
        assert all(isinstance(e["ts"], float) for e in report["timeline"])
        before, after = report["before"], report["after"]
        held_before = {s for s, p in before["positions"].items() if abs(p["qty"]) > 1e-9}
        assert "SOL-USD" in held_before, before  # the test's own position (wait_trading_with_positions)
        assert set(resting) <= {o["client_order_id"] for o in before["open_orders"]}, before["open_orders"]
        assert all(o["status"] in OPEN_STATUSES for o in before["open_orders"])
        assert after["open_orders"] == [], after
        assert all(abs(p["qty"]) < 1e-9 for p in after["positions"].values()), after
        md = md_path.read_text()
        assert md.startswith("# FAILSAFE incident") and f"- Trigger: {report['trigger']}" in md
        for heading in ("## Steps", "## Timeline", "## Before", "## After"):
            assert heading in md, md
        for name in STEP_ORDER:
            assert f"| {name} | yes |" in md, md
        # for 3 a.m.: what happened in one sentence, what to do, what is left, PnL before and after,
        # UTC times, figures rounded to the instrument (no float dust)
        title = md.splitlines()[0]
        assert title.startswith(f"# FAILSAFE incident, session {report['session_id']}: FAILSAFE at ") and \
            "confirmed flat" in title, title
        assert re.search(r"- Started: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(UTC\)", md), md
        assert "`tradectl reset` (FAILSAFE → READY), then `tradectl open`" in md, md
        left = md.split("## After the sequence: what is left")[1].split("##")[0]
        assert "Nothing: no position and no open order" in left, left
        at_trigger = md.split("## Before: the book at the trigger")[1]
        assert "| SOL-USD |" in at_trigger, at_trigger  # its position, with qty, mark, notional, PnL
        pnl = md.split("## Session PnL")[1].split("##")[0]
        assert re.search(r"\| at the trigger \| -?[\d,]+\.\d\d \| -?[\d,]+\.\d\d \| -?[\d,]+\.\d\d \|", pnl), pnl
        assert re.search(r"\| after the sequence \| -?[\d,]+\.\d\d \| 0\.00 \| -?[\d,]+\.\d\d \|", pnl), pnl
        assert after["session"]["totals"]["unrealized_pnl"] == 0 and "realized_pnl" in before["session"]["totals"]
        assert not re.search(r"\d\.\d{9,}", md), md

        # the alert, posted as JSON to the webhook
        post = wait_until(lambda: sink.posts and sink.posts[0], 5)
        assert post["path"] == "/hook" and post["content_type"] == "application/json"
        alert = post["body"]
        assert alert["event"] == "failsafe" and alert["trigger"] == report["trigger"]
        assert alert["flat"] is True and alert["ok"] is True
        assert alert["incident_report"] == str(json_path) and alert["incident_report_md"] == str(md_path)
        assert [s["name"] for s in alert["steps"]] == names
        assert {"sink": "webhook", "ok": True, "detail": "HTTP 200"} in orchestrator_status(d)["alerts"]
        assert len(sink.posts) == 1

    # no opening order gets through, before or after restarting the trading processes
    assert_no_opening_order(d)
    d.restart("engine", "exchange_manager")
    wait_until(lambda: em_stats(d)["session_state"] == "failsafe" and em_stats(d)["connectors"]["sim"]["connected"],
               15, ignore=(CommandTimeout, AssertionError), message=lambda: d.diagnostics())
    wait_until(lambda: ask(d, "engine", "status")["stats"]["session_state"] == "failsafe", 10,
               ignore=(CommandTimeout, AssertionError))
    assert_no_opening_order(d)
    assert d.state() == "failsafe"


def assert_no_opening_order(d: Daemon, quiet_s: float = 3.0) -> None:
    venue = venue_fills(d)
    n_fills, ids = len(venue["fills"]), set(venue["client_order_ids"])
    for symbol, side in (("BTC-USD", "buy"), ("ETH-USD", "sell"), ("SOL-USD", "buy")):
        reply = submit(d, symbol, side, 0.01)
        assert not reply.ok, f"an opening {side} {symbol} was accepted in FAILSAFE: {reply.result}"
        assert "trading is not enabled" in reply.error, reply.error
    assert em_stats(d)["trading_allowed"] is False
    assert ask(d, "engine", "status")["stats"]["trading_allowed"] is False
    # over a few seconds the strategies keep deciding, and nothing reaches the venue
    time.sleep(quiet_s)
    venue = venue_fills(d)
    assert len(venue["fills"]) == n_fills, venue["fills"][n_fills:]
    assert set(venue["client_order_ids"]) == ids, set(venue["client_order_ids"]) - ids
    assert venue_positions(d) == {} and venue_open_orders(d) == []
