"""``calls``: command requests paired with their replies, timed.

Command sockets are point to point and invisible to a subscriber, so every command server publishes
``proto.CommandAudit`` records on ``audit.<service>``: one when it reads a request (before the
handler runs: a stuck handler shows as a pending call) and one when it has sent the reply. Pairing
is by (service, command id); a retry reuses the id, so a duplicate answered from the server's cache
arrives as a reply with ``duplicate`` set.

Times: *server* = reply record's publish time - request record's publish time (the handler and
the encoding); *round trip* = reply record's publish time - the requester's own send time
(``sent_ns``), which includes the queueing before the server read the request. Both are wall
clock (``time.time_ns``) and so only meaningful between processes on one machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import proto
from services.tradectl.sniffer.attach import Seen


@dataclass
class Call:
    service: str
    id: str
    command: str
    caller: str
    sent_ns: int
    request_ns: int | None  # the server's request record (None: the sniffer attached after it)
    reply_ns: int | None = None
    ok: bool | None = None
    error: str = ""
    duplicate: bool = False
    pending: bool = False  # flagged: no reply within the pending timeout

    @property
    def server_ms(self) -> float | None:
        if self.reply_ns is None or self.request_ns is None:
            return None
        return (self.reply_ns - self.request_ns) / 1e6

    @property
    def rtt_ms(self) -> float | None:
        if self.reply_ns is None or not self.sent_ns:
            return None
        return (self.reply_ns - self.sent_ns) / 1e6

    def as_dict(self, now_ns: int | None = None) -> dict[str, Any]:
        d = asdict(self)
        d.update(server_ms=self.server_ms, rtt_ms=self.rtt_ms)
        if self.reply_ns is None and now_ns is not None and self.request_ns is not None:
            d["waiting_s"] = (now_ns - self.request_ns) / 1e9
        return d

    def line(self, now_ns: int | None = None) -> str:
        when = dt.datetime.fromtimestamp((self.request_ns or self.reply_ns or self.sent_ns) / 1e9).strftime("%H:%M:%S.%f")
        head = f"{when} {self.service} {self.command} from {self.caller} id={self.id}"
        if self.reply_ns is None:
            waited = (now_ns - self.request_ns) / 1e9 if now_ns and self.request_ns else 0.0
            return f"{head} PENDING: no reply after {waited:.2f}s"
        outcome = "ok" if self.ok else f"ERROR {self.error}"
        server = "-" if self.server_ms is None else f"{self.server_ms:.3f}ms"
        rtt = "-" if self.rtt_ms is None else f"{self.rtt_ms:.3f}ms"
        late = " (was pending)" if self.pending else ""
        dup = " duplicate" if self.duplicate else ""
        return f"{head} {outcome}{dup} server {server} round trip {rtt}{late}"


class CallTracker:
    """Feed it audit messages; it returns the calls that completed (and, from ``overdue``, the
    requests that have waited too long, once each)."""

    def __init__(self, pending_after_s: float) -> None:
        self.pending_after_ns = int(pending_after_s * 1e9)
        self.open: dict[tuple[str, str], Call] = {}
        self.completed = 0

    def add(self, m: Seen) -> Call | None:
        env = m.decode()
        if env is None or not isinstance(env.body, proto.CommandAudit):
            return None
        a: proto.CommandAudit = env.body
        service = m.topic[len(proto.topics.AUDIT_PREFIX):] if m.topic.startswith(proto.topics.AUDIT_PREFIX) else env.source
        key = (service, a.id)
        if a.phase == "request":
            self.open[key] = Call(service, a.id, a.name, a.caller, a.sent_ns, env.ts_ns)
            return None
        call = self.open.pop(key, None)
        if call is None:  # attached mid-call, or a duplicate answered from the cache
            call = Call(service, a.id, a.name, a.caller, a.sent_ns, None)
        call.reply_ns, call.ok, call.error, call.duplicate = env.ts_ns, a.ok, a.error, a.duplicate
        self.completed += 1
        return call

    def overdue(self, now_ns: int) -> list[Call]:
        """Requests without a reply for longer than the pending timeout, each reported once."""
        out = []
        for call in self.open.values():
            if not call.pending and call.request_ns is not None and now_ns - call.request_ns > self.pending_after_ns:
                call.pending = True
                out.append(call)
        return out
