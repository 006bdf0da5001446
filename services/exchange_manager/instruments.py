"""Each venue's instrument list, loaded on every (re)connection: what the gate checks orders against.

A connector that (re)connects may lead to a venue that restarted with other markets, so its list is
asked again each time and the connector counts as *pending* until the answer is in. While any
connector is pending the exchange manager does not report itself reconciled, so the session cannot
open (``_require_reconciled`` in the orchestrator); the previous list, if any, still serves the gate
meanwhile (an opening order for a symbol it lacks is refused until the new list says otherwise).
A venue that does not answer, or answers something that is not an ``InstrumentList``, is asked
again with backoff while the connector is up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from bus import Reactor
from proto.instruments import Instrument, InstrumentBook, InstrumentList
from services.backoff import Backoff
from services.venues.base import ExecutionClient

log = logging.getLogger(__name__)
RETRY_S, RETRY_MAX_S = 0.5, 5.0


class InstrumentRegistry:
    def __init__(self, reactor: Reactor, connectors: Iterable[str], default_connector: str,
                 routes: dict[str, str] | None = None) -> None:
        self._reactor = reactor
        self._default = default_connector
        self._routes = dict(routes or {})
        self._lists: dict[str, InstrumentList] = {}
        self._specs: dict[str, dict[str, Instrument]] = {}
        self._pending: set[str] = set(connectors)
        self._backoff: dict[str, Backoff] = {}  # per connector, while its list is not in
        self._asking: dict[str, int] = {}  # connector -> the number of its latest request
        self.loads = 0
        self.failures = 0

    def load(self, connector: ExecutionClient) -> None:
        """Ask the venue for its list (on every connection); the connector is pending until it answers."""
        name = connector.name
        self._pending.add(name)
        request = self._asking[name] = self._asking.get(name, 0) + 1

        def on_result(answer: InstrumentList | None) -> None:
            if request != self._asking.get(name):
                return  # a newer request is out (a reconnection meanwhile): its answer counts
            self._received(connector, answer)

        connector.instruments(on_result)

    def _received(self, connector: ExecutionClient, answer: InstrumentList | None) -> None:
        name = connector.name
        if answer is None:  # no answer, or one that was not a valid list (the connector logged which)
            self.failures += 1
            delay = self._backoff.setdefault(name, Backoff(RETRY_S, RETRY_MAX_S)).next()
            log.warning("instruments from %s: no valid answer; asking again in %.1fs", name, delay)
            self._reactor.call_later(delay, lambda: connector.is_connected_check() and self.load(connector))
            return
        self._lists[name] = answer
        self._specs[name] = {spec.symbol: spec for spec in answer.instruments}
        self._pending.discard(name)
        self._backoff.pop(name, None)
        self.loads += 1
        log.info("instruments from %s (%s): %s", name, answer.venue, ", ".join(sorted(self._specs[name])) or "none")

    def lookup(self, connector: str, symbol: str) -> tuple[Instrument | None, bool]:
        """The instrument (None if not listed) and whether the venue's current list is loaded
        (``connector=""``: the symbol's route)."""
        connector = connector or self._routes.get(symbol, self._default)
        specs = self._specs.get(connector, {})
        return specs.get(symbol), connector in self._specs and connector not in self._pending

    def ready(self) -> bool:
        """Every connector's list is loaded since its latest connection."""
        return not self._pending

    def book(self) -> InstrumentBook:
        return InstrumentBook(default_connector=self._default, connectors=dict(self._lists),
                              pending=sorted(self._pending), routes=dict(self._routes))

    def stats(self) -> dict[str, Any]:
        return {"loaded": {name: len(specs) for name, specs in self._specs.items()},
                "pending": sorted(self._pending), "loads": self.loads, "failures": self.failures}
