"""``tradectl bus`` at full speed: how many messages/s it decodes (echo --json) and records, and
what it loses.

A raw pyzmq publisher in a child process (``python -m bench.sniffer publish``) binds an XPUB at
the ``venue_sim`` PUB endpoint of a private temp run dir, pre-encodes N real envelopes (Quotes on
two topics, per-topic sequence numbers, about 130 bytes each) and, once the sniffer's subscription
has arrived, sends them as fast as it can (or paced at a given rate). The sniffer is the real CLI,
``tradectl bus echo --json --count N`` with stdout to /dev/null, or ``tradectl bus record FILE
--count N``; its stderr summary gives what it received, its sequence-gap count (its own drops) and
the time from its first message to its last. For record, the file is then read back and its
message count and gaps checked.

Figures: the sniffer's rate (messages / its first-to-last time), the publisher's send rate, and
the messages lost (N - received, and the gaps the sniffer counted). Each case runs ``rounds``
times, interleaved; the median is reported. Targets: echo --json >= 100,000 msgs/s decoded (or
its drops reported exactly); record at >= 100,000 msgs/s losing nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._stats import median, table

TARGET = 100_000
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.path.abspath(sys.executable)).parent


def publish(endpoint: str, n: str, rate: str) -> None:
    """Child role: pre-encode ``n`` messages, wait for a subscriber, send them (``rate`` per second,
    0 = flat out), print ``sent N SECONDS``."""
    import zmq

    import proto

    total, per_s = int(n), float(rate)
    epoch = time.time_ns()
    seqs = {b"md.BTC-USD": 0, b"md.ETH-USD": 0}
    frames = []
    for i in range(total):
        topic = b"md.BTC-USD" if i % 2 else b"md.ETH-USD"
        seqs[topic] += 1
        q = proto.Quote(symbol=topic[3:].decode(), bid=40000.0 + i % 100, ask=40000.5 + i % 100,
                        bid_size=1.0, ask_size=1.5, ts_ns=time.time_ns())
        frames.append((topic, proto.encode("venue_sim", epoch, seqs[topic], time.time_ns(), q)))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 2_000_000)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.bind(endpoint)
    print("ready", flush=True)
    sock.recv()  # the sniffer's subscription: it is connected, nothing sent from now on is lost to a slow join
    time.sleep(0.3)
    send = sock.send_multipart
    t0 = time.perf_counter()
    if per_s <= 0:
        for f in frames:
            send(f)
    else:
        batch = max(1, int(per_s / 1000))  # a 1 ms tick
        for i in range(0, total, batch):
            wait = t0 + i / per_s - time.perf_counter()
            if wait > 0:
                time.sleep(wait)  # sleep, not spin: the sniffer needs the other core
            for f in frames[i:i + batch]:
                send(f)
    elapsed = time.perf_counter() - t0
    print(f"sent {total} {elapsed}", flush=True)
    sys.stdin.read()  # stay until the parent is done (LINGER delivers the tail)


def _case(kind: str, n: int, rate: float, tmp: Path) -> dict[str, Any]:
    run_dir = tmp / "run"
    run_dir.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    env["TRADING_PATHS__RUN_DIR"] = str(run_dir)
    rec = tmp / "bench.tdbus"
    endpoint = f"ipc://{run_dir / 'venue_sim.pub'}"
    pub = subprocess.Popen([sys.executable, "-m", "bench.sniffer", "publish", endpoint, str(n), str(rate)],
                           cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert pub.stdout is not None
        if pub.stdout.readline().strip() != "ready":
            raise RuntimeError("publisher did not start")
        args = (["echo", "--json", "--count", str(n)] if kind == "echo"
                else ["record", str(rec), "--force", "--count", str(n), "--json"])
        timeout = 20 + n / 20_000
        with open(os.devnull, "wb") as devnull:
            sniffer = subprocess.Popen([str(BIN / "tradectl"), "bus", *args, "--timeout" if kind == "echo" else
                                        "--duration", str(timeout)], env=env, cwd=ROOT, stdout=devnull,
                                       stderr=subprocess.PIPE, text=True)
            _, err = sniffer.communicate(timeout=timeout + 30)
        sent_line = pub.stdout.readline().split()
        sent, send_s = int(sent_line[1]), float(sent_line[2])
    finally:
        if pub.stdin:
            pub.stdin.close()
        pub.wait(10)
    stats = next((json.loads(line)["sniffer"] for line in err.splitlines() if line.startswith('{"sniffer"')), None)
    if stats is None:
        raise RuntimeError(f"no summary from the sniffer: {err}")
    got = stats["received"] if kind == "echo" else stats["recorded"]
    m = {"kind": kind, "n": n, "sent": sent, "pub_per_s": sent / send_s, "received": got,
         "per_s": stats["per_s"] or 0, "gaps": stats["gaps"], "lost_seen": stats["lost"], "missing": sent - got}
    if kind == "record":
        from services.tradectl.sniffer.playback import summary
        from services.tradectl.sniffer.recording import Reader
        s = summary(Reader(rec))
        m.update(file_messages=s["messages"], file_lost=s["gaps"]["lost"], file_bytes=s["bytes"])
    return m


def run(rounds: int = 3, n: int = 500_000, paced: float = 100_000, out=print) -> dict:
    cases = [("echo", 0.0), ("record", 0.0), ("echo", paced), ("record", paced)]
    out(f"== sniffer: tradectl bus echo --json (to /dev/null) and record, {n:,} messages from a raw PUB flat out "
        f"and paced at {paced:,.0f}/s; {rounds} rounds interleaved ==")
    results: dict[tuple[str, float], list[dict[str, Any]]] = {c: [] for c in cases}
    for r in range(rounds):
        for kind, rate in (cases if r % 2 == 0 else list(reversed(cases))):
            tmp = Path(tempfile.mkdtemp(prefix="bench-snf-", dir="/tmp"))
            try:
                m = _case(kind, n, rate, tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            results[(kind, rate)].append(m)
            out(f"  round {r + 1} {kind:6} {'flat out' if not rate else f'{rate:,.0f}/s':>10}: publisher "
                f"{m['pub_per_s']:,.0f}/s, sniffer {m['per_s']:,.0f}/s, received {m['received']:,}/{m['sent']:,}, "
                f"gaps seen {m['gaps']} ({m['lost_seen']:,} lost)"
                + (f"; file holds {m['file_messages']:,}, {m['file_lost']} lost, {m['file_bytes'] / 1e6:.1f} MB"
                   if kind == "record" else ""))
    rows, summary = [], []
    for (kind, rate), ms in results.items():
        rate_med = median([m["per_s"] for m in ms])
        lost = max(m["missing"] for m in ms)
        rows.append([f"{kind} ({'flat out' if not rate else f'paced {rate:,.0f}/s'})",
                     ", ".join(f"{m['per_s']:,.0f}" for m in ms), f"{rate_med:,.0f}/s",
                     f"{median([m['pub_per_s'] for m in ms]):,.0f}/s", f"{lost:,}",
                     f"{rate_med / TARGET:.2f}"])
        summary.append(f"sniffer {kind} ({'flat out' if not rate else f'paced {rate:,.0f}/s'}): {rate_med:,.0f} msgs/s "
                       f"median of {len(ms)} (target {TARGET:,}: {rate_med / TARGET:.2f}x); worst loss {lost:,} of {n:,}")
    out("")
    out(table(["case", "per round (msgs/s)", "median", "publisher", "worst lost", "x target"], rows))
    return {"results": {f"{k}@{r}": v for (k, r), v in results.items()}, "summary": summary}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        publish(*sys.argv[2:])
    else:
        run()
