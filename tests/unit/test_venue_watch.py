"""services.exchange_manager.venue_watch.VenueWatch: continuous reconciliation on a real event loop.

The loop (``bus.Reactor``) runs in a thread of its own, as in the exchange manager; the test acts on
it only through ``call_soon_threadsafe`` (``on_loop``). The venue is a real Matcher behind the
smallest real connector (``venue_rig.py``), and the safety events go out on a real PUB socket to a
real subscriber.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
import zmq
from unit_support import Collector, handshake, reactor_thread, wait_until
from venue_rig import Rig

import proto
from bus import BusSettings, Publisher, Reactor, Subscriber, make_socket
from proto import Side
from proto.commands import NewOrderArgs
from services.exchange_manager import venue_watch
from services.exchange_manager.settings import ExchangeManagerSettings
from services.exchange_manager.venue_watch import VenueWatch

T = TypeVar("T")


class WatchRig:
    def __init__(self, ctx: zmq.Context, interval_s: float, min_gap_s: float = 0.05) -> None:
        self.reactor = Reactor()
        bus = BusSettings()
        pub = make_socket(ctx, zmq.PUB, bus)
        endpoint = f"inproc://venue-watch-{time.monotonic_ns()}"
        pub.bind(endpoint)
        sub = make_socket(ctx, zmq.SUB, bus)
        self.subscriber = Subscriber(sub)
        self.subscriber.subscribe("")
        self.subscriber.connect(endpoint)
        self.safety = Collector(self.subscriber)
        handshake(pub, self.safety)
        self.rig = Rig()
        self.rig.matcher.on_quote("SOL-USD", 150.0, 150.1)
        runtime = SimpleNamespace(reactor=self.reactor, publisher=Publisher(pub, "exchange_manager", time.time_ns()))
        cfg = ExchangeManagerSettings(reconcile_interval_s=interval_s, reconcile_min_gap_s=min_gap_s)
        self.watch = VenueWatch(runtime, self.rig.reconciler, self.rig.book,  # type: ignore[arg-type]
                                {"sim": self.rig.connector}, cfg, foreign_positions=lambda: {})  # type: ignore[dict-item]
        self.rig.listeners.append(self.watch.on_outcome)
        self._sockets = (pub, sub)

    def on_loop(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the loop's thread and return its result."""
        done = threading.Event()
        box: list[Any] = []
        self.reactor.call_soon_threadsafe(lambda: (box.append(fn()), done.set()))
        assert done.wait(timeout), "the loop did not run the call"
        return box[0]

    def hold_answers(self) -> list[Callable[[], None]]:
        """The venue's answers from now on wait in the list returned, each delivered by calling it."""
        held: list[Callable[[], None]] = []
        query = self.rig.connector.query

        def held_query(name: str, args: dict[str, Any], report_type: type, on_result: Callable[[Any], None]) -> None:
            query(name, args, report_type, lambda result: held.append(lambda: on_result(result)))

        self.rig.connector.query = held_query  # type: ignore[method-assign]
        return held

    def asked(self, name: str) -> int:
        return self.on_loop(lambda: sum(1 for q, _ in self.rig.connector.asked if q == name))

    def anomalies(self, needle: str = "") -> list[proto.SafetyEvent]:
        self.safety.pump(0)
        return [env.body for _topic, env in self.safety.messages if isinstance(env.body, proto.SafetyEvent)
                and env.body.event_type is proto.SafetyEventType.EXECUTION_ANOMALY and needle in env.body.message]

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)


@pytest.fixture
def watch_rig(ctx: zmq.Context) -> Iterator[Callable[..., WatchRig]]:
    made: list[tuple[WatchRig, Any]] = []

    def make(interval_s: float, min_gap_s: float = 0.05) -> WatchRig:
        w = WatchRig(ctx, interval_s, min_gap_s)
        thread = reactor_thread(w.reactor)
        thread.__enter__()
        made.append((w, thread))
        return w

    yield make
    for w, thread in made:
        thread.__exit__(None, None, None)
        w.close()


def test_an_order_no_report_told_of_is_found_within_the_interval(watch_rig: Callable[..., WatchRig]) -> None:
    """An order placed at the venue behind the system's back, whose report never reached the book: the
    periodic comparison finds it, the book adopts it, and the anomaly is published."""
    w = watch_rig(0.2)
    t0 = time.monotonic()
    w.on_loop(lambda: w.rig.matcher.new_order(NewOrderArgs(client_order_id="outsider-1", symbol="SOL-USD",
                                                           side=Side.BUY, qty=1.0, order_type="limit",
                                                           limit_price=140.0)))
    events = wait_until(lambda: w.anomalies("outsider-1"), 5)
    assert time.monotonic() - t0 < 0.2 + 2.0  # the interval, give or take a loaded machine
    assert events[0].symbol == "SOL-USD" and "adopted" in events[0].message
    assert w.on_loop(w.watch.venue_unknown) == {"orders": 1, "positions": {}}
    assert w.on_loop(lambda: w.rig.book.orders["outsider-1"].strategy) == "foreign"
    runs = w.on_loop(lambda: w.rig.reconciler.runs)
    done = w.on_loop(lambda: len(w.rig.reports))
    # two more comparisons have run to their outcome (what they published is in, over inproc) ...
    wait_until(lambda: w.on_loop(lambda: len(w.rig.reports)) >= done + 2, 5)
    assert len(w.anomalies("outsider-1")) == 1  # ... adopted: the next comparisons agree
    assert w.on_loop(lambda: w.rig.reconciler.runs) > runs


def test_requests_while_a_run_is_out_join_the_next_run(watch_rig: Callable[..., WatchRig]) -> None:
    w = watch_rig(60.0)
    held = w.hold_answers()
    connector = w.rig.connector
    numbers = w.on_loop(lambda: [w.watch.request(connector) for _ in range(50)])  # type: ignore[arg-type]
    first = numbers[0]
    assert numbers[1:] == [first + 1] * 49 and w.asked("mass_status") == 1
    w.on_loop(lambda: held.pop(0)())  # the first run ends: the one they joined starts, once
    wait_until(lambda: w.asked("mass_status") == 2, 2)
    w.on_loop(lambda: held.pop(0)())
    time.sleep(0.3)
    assert w.asked("mass_status") == 2, "requests joined one run, not one each"
    outcome = w.on_loop(lambda: w.rig.reconciler.outcomes["sim"])
    assert outcome.ok and outcome.run >= first + 1  # what the 49 waited for


def test_back_to_back_requests_are_spaced_out(watch_rig: Callable[..., WatchRig]) -> None:
    """A caller asking again as soon as each answer is in (the failsafe's verify) gets at most one run
    per reconcile_min_gap_s."""
    w = watch_rig(60.0, min_gap_s=0.05)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        w.on_loop(lambda: w.watch.request(w.rig.connector))  # type: ignore[arg-type]
        time.sleep(0.001)
    runs = w.asked("mass_status")
    assert 5 <= runs <= 1.0 / 0.05 + 3, runs


def test_a_venue_that_does_not_answer_is_asked_again_with_backoff(watch_rig: Callable[..., WatchRig]) -> None:
    w = watch_rig(60.0)
    w.rig.connector.answering = False
    w.on_loop(lambda: w.watch.request(w.rig.connector))  # type: ignore[arg-type]
    time.sleep(2.2)  # retries at 0.5 s, then 1.0 s later
    asked = w.asked("mass_status")
    assert 2 <= asked <= 4, asked
    w.rig.connector.answering = True
    wait_until(lambda: w.on_loop(lambda: w.rig.reconciler.last is not None and w.rig.reconciler.last.ok), 5)
    settled = w.asked("mass_status")
    time.sleep(1.0)
    assert w.asked("mass_status") == settled, "a run that passed is not retried"


def test_a_burst_of_anomalies_is_one_event_and_a_summary(watch_rig: Callable[..., WatchRig]) -> None:
    w = watch_rig(60.0)

    def burst() -> None:
        for i in range(10):
            w.watch.foreign_fill(proto.Fill(fill_id=f"F{i}", client_order_id=f"outsider-{i}", symbol="SOL-USD",
                                            side=Side.BUY, qty=0.1, price=150.0, fee=0.0, ts_ns=1, connector="sim"))

    w.on_loop(burst)
    first = wait_until(lambda: w.anomalies("outsider-0"), 2)
    assert len(w.anomalies()) == 1 and first[0].evidence == {"qty": 0.1, "price": 150.0}
    summary = wait_until(lambda: w.anomalies("9 more"), 3)
    assert "outsider-9" in summary[0].message and summary[0].evidence["more"] == 9.0
    assert w.on_loop(lambda: w.watch.suppressed) == 9


def test_what_the_venue_still_holds_is_announced_again(watch_rig: Callable[..., WatchRig],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An anomaly published before anyone listened (a restarted exchange manager) is not the end of
    it: while the venue holds what the system did not send, it is said again every REMIND_S."""
    monkeypatch.setattr(venue_watch, "REMIND_S", 0.3)
    w = watch_rig(0.1)
    w.on_loop(lambda: w.rig.matcher.new_order(NewOrderArgs(client_order_id="outsider-r", symbol="SOL-USD",
                                                           side=Side.SELL, qty=1.0, order_type="limit",
                                                           limit_price=160.0)))
    reminders = wait_until(lambda: len(w.anomalies("still holds")) >= 2 and w.anomalies("still holds"), 5)
    assert "outsider-r" in reminders[0].message and reminders[0].evidence["orders"] == 1.0


def test_a_reconcile_request_is_answered_when_its_run_has_ended(watch_rig: Callable[..., WatchRig],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``reconcile``'s reply waits for the run that answers it (no polling of ``reconciliation``):
    not before that run's outcome, with it; a run that cannot start ends the wait with the reason."""
    w = watch_rig(60.0)
    held = w.hold_answers()
    connector = w.rig.connector
    replies: list[tuple[dict[str, Any] | None, str]] = []

    def ask() -> int:
        run = w.watch.request(connector)  # type: ignore[arg-type]
        w.watch.when_done({"sim": run}).bind(lambda result, reason: replies.append((result, reason)))
        return run

    first = w.on_loop(ask)
    second = w.on_loop(ask)  # while the first run is out: it joins the next one
    assert second == first + 1
    assert w.on_loop(lambda: list(replies)) == []
    w.on_loop(lambda: held.pop(0)())  # the first run ends: only the first request is answered
    result, reason = w.on_loop(lambda: replies[0])
    assert reason == "" and result is not None
    assert result["runs"] == {"sim": first} and result["outcomes"]["sim"]["run"] == first
    assert result["outcomes"]["sim"]["ok"] and w.on_loop(lambda: len(replies)) == 1
    wait_until(lambda: w.asked("mass_status") == 2, 2)
    w.on_loop(lambda: held.pop(0)())
    wait_until(lambda: w.on_loop(lambda: len(replies)) == 2, 2)
    result, _ = w.on_loop(lambda: replies[1])
    assert result is not None and result["outcomes"]["sim"]["run"] >= second
    # nothing connected: answered at once, with nothing
    empty: list[Any] = []
    w.on_loop(lambda: w.watch.when_done({}).bind(lambda r, e: empty.append((r, e))))
    assert empty == [({"runs": {}, "outcomes": {}}, "")]
    # a run that never comes (its venue went away before it could start): the wait ends, with why
    monkeypatch.setattr(venue_watch, "REPLY_WITHIN_S", 0.2)
    never_ran: list[Any] = []
    w.on_loop(lambda: w.watch.when_done({"sim": 10_000}).bind(lambda r, e: never_ran.append((r, e))))
    wait_until(lambda: w.on_loop(lambda: list(never_ran)), 3)
    assert never_ran[0][0] is None and "sim not done within 0.2s" in never_ran[0][1]
