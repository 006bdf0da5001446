"""Pure CPU cost of the one encoder/decoder, per message, in µs (no sockets).

* ``Heartbeat``: ``proto.encode`` and ``proto.decode`` of the 267-byte Heartbeat (its summary typed) that
  ``bus_latency`` publishes, separately and together.
* ``command path``: everything proto does for one command round trip: encode the ``Command``,
  decode it, ``parse_args``, build ``ok()``, encode the ``Reply``, decode the ``Reply``.
* baseline: ``msgspec.msgpack`` encode/decode of the same envelope as a plain untyped tuple, so the
  cost of the typed, validating decode is visible.

Timed in batches; each case runs ``rounds`` times interleaved with the others and the median batch
is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import msgspec

import proto
from bench import _peer
from bench._stats import median, table


def _cases() -> dict[str, Callable[[], object]]:
    epoch = time.time_ns()
    hb = _peer.ours_heartbeat(time.perf_counter_ns(), 1234)  # the one bus_latency sends
    hb_bytes = proto.encode("data_router", epoch, 1, time.time_ns(), hb)
    cmd = proto.Command(id=f"bench:{os.getpid()}:{epoch}:1", name="status")
    plain = (1, "heartbeat", "data_router", epoch, 1, time.time_ns(), msgspec.to_builtins(hb))
    plain_enc, plain_dec = msgspec.msgpack.Encoder(), msgspec.msgpack.Decoder()
    enc, dec = proto.encode, proto.decode

    def command_path() -> None:
        request = enc("bench", epoch, 1, 1, cmd)
        got = dec(request).body
        proto.parse_args(got.name, got.args)
        reply = enc("engine", epoch, 1, 1, proto.ok(got.id))
        dec(reply)

    return {
        "Heartbeat encode": lambda: enc("data_router", epoch, 1, 1, hb),
        "Heartbeat decode": lambda: dec(hb_bytes),
        "Heartbeat encode+decode": lambda: dec(enc("data_router", epoch, 1, 1, hb)),
        "command path (req+reply)": command_path,
        "baseline: untyped msgspec enc+dec": lambda: plain_dec.decode(plain_enc.encode(plain)),
    }


def _batch(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - t0) / n / 1000


def run(rounds: int = 7, batch: int = 20_000, out=print) -> dict:
    out(f"== codec: proto.encode / proto.decode CPU cost per message ({rounds} rounds x {batch}) ==")
    cases = _cases()
    for fn in cases.values():  # warm-up
        _batch(fn, 2000)
    per: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            per[name].append(_batch(fn, batch))
    result = {name: median(values) for name, values in per.items()}
    out(table(["case", "µs/msg (median)", "min", "max"],
              [[name, f"{result[name]:.2f}", f"{min(per[name]):.2f}", f"{max(per[name]):.2f}"]
               for name in cases]))
    hb = result["Heartbeat encode+decode"]
    return {"us_per_msg": result,
            "summary": [f"proto encode+decode of a Heartbeat: {hb:.2f} µs/msg "
                        f"(encode {result['Heartbeat encode']:.2f}, decode {result['Heartbeat decode']:.2f}); "
                        f"command path {result['command path (req+reply)']:.2f} µs"]}


if __name__ == "__main__":
    run()
