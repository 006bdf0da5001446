"""The ``--filter`` language: what it matches, and the expressions it refuses to run."""

from __future__ import annotations

from typing import Any

import pytest

import proto
from services.tradectl.sniffer.attach import Seen
from services.tradectl.sniffer.filters import Filter, FilterError
from proto.summaries import Condition, SafetySummary


def _ctx(topic: str, source: str, body: proto.Message, seq: int = 1) -> dict[str, Any]:
    m = Seen(2_000_000_000, topic, proto.encode(source, 1, seq, 1_000_000_000, body))
    return m.context()


FILL = _ctx("fills", "exchange_manager", proto.Fill(fill_id="f1", client_order_id="c1", symbol="BTC-USD",
                                                     side=proto.Side.BUY, qty=0.25, price=40000.0, fee=0.1, ts_ns=5))
HB = _ctx("hb.safety", "safety", proto.Heartbeat(pid=42, interval_s=0.25, state=proto.OrchestratorState.LIVE,
                                                 stats=SafetySummary(uptime_s=90, holding=[
                                                     Condition(detector="d", event_type="e", symbol=s, reason="r",
                                                               since=1.0) for s in ("a", "b")])))


@pytest.mark.parametrize("expr, fill, hb", [
    ('body.symbol == "BTC-USD" and body.qty > 0.1', True, False),
    ('body.symbol == "BTC-USD" and body.qty > 0.5', False, False),
    ('source in ["engine", "safety"]', False, True),
    ('source not in ["engine", "safety"]', True, False),
    ("body.side == 'buy'", True, False),  # enums compare by their wire value
    ("body.state == 'live' and body.stats.uptime_s >= 60", False, True),
    ('body.stats["uptime_s"] * 2 == 180', False, True),
    ("body.stats.holding[1].symbol == 'b' and len(body.stats.holding) == 2", False, True),
    ("startswith(topic, 'hb.') or endswith(topic, 'ills')", True, True),
    ("matches(source, '^exch') and contains(body.fill_id, 'f')", True, False),
    ("body.price - 39999 == 1 and -body.qty < 0 and body.price / 2 == 20000 and body.price % 7 == 2", True, False),
    ("body.symbol != 'ETH-USD'", True, False),  # a missing field matches no comparison, != included
    ("not body.symbol == 'ETH-USD'", True, True),
    ("seq == 1 and size > 10 and age == 1.0 and ts_ns == 1000000000 and type == 'fill'", True, False),
    ("body.nope.deeper == 1 or body.stats.nope > 3", False, False),
    ("body.qty > 'abc'", False, False),  # incomparable: false, not an error
    ("body.qty / 0 > 1", False, False),
    ("true and not false and null == null", True, True),
])
def test_matches(expr: str, fill: bool, hb: bool) -> None:
    f = Filter(expr)
    assert f(FILL) is fill
    assert f(HB) is hb


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')",
    "body.__class__",
    "body._private",
    "body['__class__'] == 1",  # a string key starting with _ finds nothing (and is no attribute)
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x=1')",
    "lambda: 1",
    "[x for x in body]",
    "{'a': 1}",
    "{1, 2}",
    "f'{body}'",
    "(x := 1)",
    "2 ** 1000000",
    "topic[0:3]",
    "body.symbol.upper()",
    "getattr(body, 'symbol')",
    "startswith(topic, prefix='x')",
    "len(topic, topic)",
    "1 if true else 2",
    "os.system",
    "b'bytes' == topic",
    "topic is None",
    "~seq",
    "seq << 2",
    "x" * 3000,
    "body.symbol ==",
])
def test_refused(expr: str) -> None:
    if expr == "body['__class__'] == 1":
        assert Filter(expr)(FILL) is False
        return
    with pytest.raises(FilterError):
        Filter(expr)


def test_no_allocation_bombs() -> None:
    assert Filter("topic * 1000000000 == 'x'")(FILL) is False
    assert Filter("[1] * 1000000000 == [1]")(FILL) is False


def test_refusals_say_why() -> None:
    with pytest.raises(FilterError, match="only these functions"):
        Filter("open('x')")
    with pytest.raises(FilterError, match="unknown name 'os'"):
        Filter("os == 1")
    with pytest.raises(FilterError, match="'_'"):
        Filter("body.__class__")
