"""``python -m bench [NAME ...] [--quick] [--minutes M]``: run the benchmarks and print a report.

Names: ``regress`` (tick-to-order against ``bench/baseline.json``: exits 1 on a regression over 20 %;
``--record`` writes this run's figure there), ``bus`` (bus_latency), ``pubsend`` (pub_send), ``codec``, ``reactor`` (reactor_idle), ``daemon`` (daemon_idle),
``tick`` (tick_to_order), ``throughput``, ``failsafe``, ``sniffer`` (tradectl bus), ``venues`` (ccxt against
native), ``console`` (the web console: state change -> page, its cost, tick-to-order with a page open),
and the long one, ``soak`` (10 minutes; ``--minutes M`` to change); none means all but the long ones,
in that order. ``--quick`` runs fewer, shorter rounds (a smoke test; its figures are not the ones to
quote; ``soak --quick`` runs 1 minute). Run from the repository root (``make bench``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import signal
import sys
import time
import traceback

import msgspec
import zmq

from bench import (
    bus_latency,
    codec,
    console,
    daemon_idle,
    failsafe,
    pub_send,
    reactor_idle,
    regression,
    sniffer,
    soak,
    throughput,
    tick_to_order,
    venues,
)

BENCHMARKS = {
    "regress": (regression.run, {"rounds": 1, "seconds": 5.0}),
    "bus": (bus_latency.run, {"rounds": 2, "samples": 500}),
    "pubsend": (pub_send.run, {"rounds": 6, "batch": 5_000}),
    "codec": (codec.run, {"rounds": 3, "batch": 5_000}),
    "reactor": (reactor_idle.run, {"rounds": 1, "seconds": 1.0}),
    "daemon": (daemon_idle.run, {"seconds": 5.0}),
    "tick": (tick_to_order.run, {"rounds": 1, "seconds": 5.0, "warmup_s": 2.0, "drift_s": 20.0, "fsync": False}),
    "throughput": (throughput.run, {"rounds": 1, "step_s": 3.0, "overdrive_s": 10.0}),
    "failsafe": (failsafe.run, {"trials": 3, "detections": 1}),
    "sniffer": (sniffer.run, {"rounds": 1, "n": 100_000}),
    "soak": (soak.run, {"minutes": 1.0, "interval_s": 10.0}),
    "venues": (venues.run, {"rounds": 1, "seconds": 5.0, "warmup_s": 2.0}),
    "console": (console.run, {"transitions": 12, "rounds": 1, "window_s": 4.0, "warmup_s": 2.0}),
}
ALIASES = {"bus_latency": "bus", "pub_send": "pubsend", "reactor_idle": "reactor", "daemon_idle": "daemon", "tick_to_order": "tick"}
# Registered, but run only when named: they take long (soak: 10 minutes).
LONG = {"soak"}


def _header() -> str:
    load = open("/proc/loadavg").read().split()[:3]
    return (f"bench {datetime.datetime.now().isoformat(timespec='seconds')}  |  {os.cpu_count()} cores, "
            f"load {' '.join(load)}  |  Python {platform.python_version()}, pyzmq {zmq.__version__}, "
            f"libzmq {zmq.zmq_version()}, msgspec {msgspec.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all but {', '.join(sorted(LONG))})")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke test)")
    parser.add_argument("--minutes", type=float, default=None, help="soak: how long (default 10; --quick: 1)")
    parser.add_argument("--record", action="store_true", help="regress: record this run's figure as the reference")
    args = parser.parse_args(argv)
    names = [ALIASES.get(n, n) for n in args.names] or [n for n in BENCHMARKS if n not in LONG]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM too: every daemon and child a benchmark started is cleaned up

    signal.signal(signal.SIGTERM, interrupted)
    print(_header(), flush=True)
    t0 = time.monotonic()
    summary: list[str] = []
    failed = []
    for name in names:
        fn, quick = BENCHMARKS[name]
        print(flush=True)
        started = time.monotonic()
        try:
            kwargs = dict(quick if args.quick else {})
            if name == "soak" and args.minutes is not None:
                kwargs["minutes"] = args.minutes
            if name == "regress":
                kwargs["record"] = args.record
            result = fn(**kwargs, out=lambda *a: print(*a, flush=True))
        except KeyboardInterrupt:
            print(f"{name}: interrupted", flush=True)
            failed.append(name)
            break
        except Exception:
            traceback.print_exc()
            failed.append(name)
            summary.append(f"{name}: FAILED (see above)")
            continue
        print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
        if result.get("failed"):
            failed.append(name)
        summary.extend(result.get("summary", []))

    print("\n== summary ==")
    for line in summary:
        print(f"- {line}")
    print(f"total {time.monotonic() - t0:.0f} s" + ("  (--quick: smoke-test figures)" if args.quick else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
