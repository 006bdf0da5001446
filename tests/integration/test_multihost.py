"""The session across hosts (issue 14): two hosts as network namespaces, one supervisord each, over
tcp with CURVE, and a third host with no key.

Host ``a`` runs the orchestrator, safety, the data router and the venue; host ``b`` the engine and
the exchange manager (the trading path crosses hosts twice: quotes a -> b, orders b -> a). Each
host has its own key directory: its own processes' secret keys and every public key (as
docs/deploy-multihost.md says to copy them). The test runs in the root namespace, an operator's
host. Shown: the session going LIVE and trading; a process on host ``c`` with a key of its own, or
none, refused; a failsafe that flattens across hosts; ``b``'s link cut: the orchestrator finds
``b``'s processes missing (DEGRADED) and ``b``'s dead-man switches stop its trading; the link back
and the session recovered to LIVE.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bus import CommandTimeout, keys
from deploy.temp_daemon import HARNESS
from proto.commands.base import IDENTITIES

from .daemon import PYTHON, Daemon, wait_until
from .e2e import ask, venue_fills, venue_positions
from .netns import Hosts, unavailable

WHY_NOT = unavailable()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")

ON_A = ("orchestrator", "safety", "data_router", "venue_sim")
ON_B = ("engine", "exchange_manager")
OPERATOR_TOOLS = ("tradectl", HARNESS)


def _distribute(master: Path, dest: Path, secrets: tuple[str, ...]) -> None:
    """Every public key, and the secret keys of ``secrets``, from ``master`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for public in master.glob(f"*{keys.PUBLIC_SUFFIX}"):
        shutil.copy2(public, dest / public.name)
    for name in secrets:
        shutil.copy2(master / f"{name}{keys.SECRET_SUFFIX}", dest / f"{name}{keys.SECRET_SUFFIX}")


def _config(hosts: Hosts, me: str, port: int) -> dict[str, Any]:
    where = {**{s: hosts.addr["a"] for s in (*ON_A, "supervisor")}, **{s: hosts.addr["b"] for s in ON_B}}
    return {"bus": {"transport": "tcp", "tcp_base_port": port, "hosts": where, "bind_host": hosts.addr[me]},
            "engine": {"deadman_timeout_s": 1.0}}


STRANGER = textwrap.dedent("""
    import sys, time, zmq, proto
    from bus import Curve, KeyStore, keys
    from pathlib import Path
    endpoint, server_key_dir, tmp = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    keys.generate(tmp, "tradectl")               # a key pair of its own, not in any host's directory
    me = Curve(KeyStore(tmp), "tradectl")
    me.keys = KeyStore(server_key_dir)           # it knows the servers' public keys
    ctx = zmq.Context()
    answered = []
    for secure in (True, False):
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        if secure:
            me.connect(sock, endpoint, "orchestrator")
        else:
            sock.connect(endpoint)
        sock.send(proto.encode("tradectl", 1, 1, time.time_ns(),
                               proto.Command(id="stranger-1", name="failsafe", args={"reason": "from c"})))
        answered.append(bool(sock.poll(2000)))
        sock.close()
    print("answered" if any(answered) else "refused")
""")


def test_two_hosts_over_tcp_with_curve(tmp_path: Path) -> None:
    port = 47100 + (hash(tmp_path) % 400) * 20
    master = tmp_path / "master-keys"
    keys.ensure(master, list(IDENTITIES))
    keys.generate(master, HARNESS, "operator")
    with Hosts(["a", "b", "c"]) as hosts:
        daemons: dict[str, Daemon] = {}
        try:
            for me, programs in (("a", ON_A), ("b", ON_B)):
                d = Daemon(_config(hosts, me, port), only=programs, launcher=hosts.launcher(me), prefix=f"ltd-{me}-")
                shutil.rmtree(d.keys_dir)
                _distribute(master, d.keys_dir, (*programs, "supervisor", *OPERATOR_TOOLS))
                daemons[me] = d
            for d in daemons.values():
                d.start(wait=False)
            for d in daemons.values():
                d.wait_serving(timeout=60)
            a = daemons["a"]
            a.wait_state("live", timeout=60)
            wait_until(lambda: venue_fills(a)["fills"], 30, message="no fill across hosts")

            # a host with no key in any directory: not heard, with its own key or in the clear
            stranger = subprocess.run(
                [*hosts.launcher("c"), PYTHON, "-c", STRANGER, a.endpoints.cmd("orchestrator"), str(a.keys_dir),
                 str(tmp_path / "stranger-keys")], capture_output=True, text=True, timeout=60, cwd=str(Path.cwd()))
            assert stranger.stdout.strip() == "refused", (stranger.stdout, stranger.stderr)
            assert a.state() == "live"
            assert ask(a, "orchestrator", "status")["bus"]["curve"]["refused_handshakes"] >= 1

            # a failsafe flattens across hosts
            res = a.tradectl("failsafe", "--reason", "multihost", "--wait", timeout=60)
            assert res.returncode == 0, res.stdout + res.stderr
            assert venue_positions(a) == {}
            for command in ("reset", "open"):
                assert a.tradectl(command).returncode == 0
            a.wait_state("live", timeout=30)

            # b's link cut: its processes missing on a, and b stops trading by itself
            hosts.cut("b")
            cut_at = time.monotonic()
            wait_until(lambda: a.state() in ("degraded", "failsafe"), 15, ignore=(CommandTimeout,))
            degraded_after = time.monotonic() - cut_at
            b_logs = daemons["b"].log_dir
            wait_until(lambda: all("dead-man switch" in (b_logs / f"{p}.log").read_text(errors="replace")
                                   for p in ON_B), 10, message="b's dead-man switches did not trip")
            print(f"FIGURE link cut -> session {a.state()}: {degraded_after:.2f}s")

            # the link back: b heard again, the session recovers
            hosts.mend("b")
            if a.state() == "failsafe":
                assert a.tradectl("reset").returncode == 0
                assert a.tradectl("open").returncode == 0
            else:
                wait_until(lambda: a.tradectl("recover").returncode == 0, 30, interval=1.0,
                           message="recover refused after the link came back")
            a.wait_state("live", timeout=30)
            for service in ON_B:
                wait_until(lambda s=service: ask(a, s, "status")["stats"]["trading_allowed"], 15)
        finally:
            for d in daemons.values():
                d.close()
