"""services.safety.detectors: the locked/crossed book and the de-duplication, with crafted input.
(The larger detectors have their own test files: test_price_jump, test_stale_feed, test_execution.)"""

from __future__ import annotations

import proto
from proto import SafetyEventType, Severity
from services.safety.detectors import CrossedBook, Dedup


def q(mid: float, symbol: str = "BTC-USD", half: float = 0.5) -> proto.Quote:
    return proto.Quote(symbol=symbol, bid=mid - half, ask=mid + half, bid_size=1.0, ask_size=1.0, ts_ns=1)


# -- CrossedBook ---------------------------------------------------------------------------------


def test_crossed_book_locked_quote_and_refused_crossed_quote() -> None:
    cb = CrossedBook()
    assert cb.on_quote(q(100.0)) == []
    (locked,) = cb.on_quote(proto.Quote(symbol="ETH-USD", bid=10.0, ask=10.0, bid_size=1, ask_size=1, ts_ns=1))
    assert locked.event_type is SafetyEventType.CROSSED_BOOK and locked.severity is Severity.WARNING
    assert locked.message == "Locked book: bid 10.00 = ask 10.00" and locked.symbol == "ETH-USD"
    (crossed,) = cb.on_bad_data(proto.BadMarketData(symbol="BTC-USD", reason="crossed", detail="bid 101 > ask 100"))
    assert crossed.event_type is SafetyEventType.CROSSED_BOOK
    assert crossed.message == "Crossed book refused by the data router: bid 101 > ask 100"
    (other,) = cb.on_bad_data(proto.BadMarketData(symbol="BTC-USD", reason="bad_price", detail="nan"))
    assert other.event_type is SafetyEventType.DATA_ANOMALY
    assert other.message == "Bad market data refused by the data router (bad_price)"


# -- Dedup ---------------------------------------------------------------------------------------


def sev(severity: Severity, symbol: str = "BTC-USD", kind: SafetyEventType = SafetyEventType.DATA_ANOMALY
        ) -> proto.SafetyEvent:
    return proto.SafetyEvent(event_type=kind, severity=severity, symbol=symbol, message="m")


def test_dedup_one_event_per_incident_within_the_cooldown() -> None:
    d = Dedup(cooldown_s=30.0, critical_cooldown_s=1.0)
    W, C = Severity.WARNING, Severity.CRITICAL
    assert d.admit("price_jump", sev(W), 0.0)
    assert not d.admit("price_jump", sev(W), 10.0)
    assert not d.admit("price_jump", sev(W), 29.9)
    assert d.suppressed == 2
    # other detectors, types and symbols are other incidents
    assert d.admit("stale_feed", sev(W), 10.0)
    assert d.admit("price_jump", sev(W, symbol="ETH-USD"), 10.0)
    assert d.admit("price_jump", sev(W, kind=SafetyEventType.STALE_FEED), 10.0)
    assert d.admit("price_jump", sev(W), 30.0)  # the cool-down is over
    # a critical after a warning is never held back
    assert d.admit("price_jump", sev(C), 31.0)
    assert not d.admit("price_jump", sev(C), 31.5)  # within critical_cooldown_s
    assert not d.admit("price_jump", sev(W), 31.6)  # a warning after a critical waits the cool-down
    assert d.admit("price_jump", sev(C), 32.0)  # a second critical incident waits 1 s only
    assert d.suppressed == 4
    d.reset()
    assert d.admit("price_jump", sev(W), 32.1)
