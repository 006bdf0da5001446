"""``tradectl bus echo --json``: what a peer writes inside a message (a free-text reason) cannot
break the line, even a U+2028 that JSON itself would leave unescaped and ``str.splitlines`` splits on."""

from __future__ import annotations

import json

import proto
from services.tradectl.sniffer.attach import Seen
from services.tradectl.sniffer.echo import json_line


def test_a_peers_line_break_stays_inside_its_json_line() -> None:
    reason = "looks done\u2028{\"forged\": true}\u0085end"
    data = proto.encode("exchange_manager", 1, 1, 1, proto.GovernanceEvent(kind="note", reason=reason))
    seen = Seen(2, "governance", data)
    assert seen.decode() is not None
    line = json_line(seen).decode()
    assert len(line.splitlines()) == 1 and line.isprintable(), line
    assert json.loads(line)["body"]["reason"] == reason


def test_an_undecodable_topic_with_a_line_break_stays_one_line() -> None:
    seen = Seen(2, "md.\u2028x", b"\xc1 not msgpack")
    assert seen.decode() is None
    line = json_line(seen).decode()
    assert len(line.splitlines()) == 1 and json.loads(line)["topic"] == "md.\u2028x"
