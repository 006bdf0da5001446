"""``python -m bench [NAME ...] [--quick]``: run the benchmarks and print a report.

Names: ``bus`` (bus_latency), ``codec``, ``reactor`` (reactor_idle), ``daemon`` (daemon_idle);
none means all of them, in that order. ``--quick`` runs fewer, shorter rounds (a smoke test; its
figures are not the ones to quote). Run from the repository root (``make bench``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import traceback

import msgspec
import zmq

from bench import bus_latency, codec, daemon_idle, reactor_idle

BENCHMARKS = {
    "bus": (bus_latency.run, {"rounds": 2, "samples": 500}),
    "codec": (codec.run, {"rounds": 3, "batch": 5_000}),
    "reactor": (reactor_idle.run, {"rounds": 1, "seconds": 1.0}),
    "daemon": (daemon_idle.run, {"seconds": 5.0}),
}
ALIASES = {"bus_latency": "bus", "reactor_idle": "reactor", "daemon_idle": "daemon"}


def _header() -> str:
    load = open("/proc/loadavg").read().split()[:3]
    return (f"bench {datetime.datetime.now().isoformat(timespec='seconds')}  |  {os.cpu_count()} cores, "
            f"load {' '.join(load)}  |  Python {platform.python_version()}, pyzmq {zmq.__version__}, "
            f"libzmq {zmq.zmq_version()}, msgspec {msgspec.__version__}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke test)")
    args = parser.parse_args(argv)
    names = [ALIASES.get(n, n) for n in args.names] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    print(_header(), flush=True)
    t0 = time.monotonic()
    summary: list[str] = []
    failed = []
    for name in names:
        fn, quick = BENCHMARKS[name]
        print(flush=True)
        started = time.monotonic()
        try:
            result = fn(**(quick if args.quick else {}), out=lambda *a: print(*a, flush=True))
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
        summary.extend(result.get("summary", []))

    print("\n== summary ==")
    for line in summary:
        print(f"- {line}")
    print(f"total {time.monotonic() - t0:.0f} s" + ("  (--quick: smoke-test figures)" if args.quick else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
