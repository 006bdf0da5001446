"""Nobody unauthorised commands or impersonates the session (issue 14): CURVE on every socket, rights
per identity, the envelope's source checked, and each forged scenario of the issue refused.

Reproduced before the fix with a few lines of pyzmq against ``run/``: a forged ``submit_order`` was
filled; a forged ``failsafe``, ``reset`` and ``open`` changed the session; an order sent straight to
the venue opened a position during FAILSAFE; a process that bound ``orchestrator.pub`` after a
kill -9 of the orchestrator made the engine trade during FAILSAFE, and the real orchestrator went
FATAL (its endpoint taken). Each is a case here, against the real daemon.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from typing import Any

import pytest
import zmq

import proto
from bus import CommandClient, CommandTimeout, Curve, KeyStore, keys, make_socket

from .daemon import Daemon, wait_until
from .e2e import ask, open_position, venue_fills, venue_positions

MODULE_DAEMON: dict[str, Any] = {}
FORGED = "forged:1"


def _client(d: Daemon, service: str, *, identity: str, security: Any, source: str | None = None) -> CommandClient:
    return CommandClient(d._ctx, d.endpoints.cmd(service), d.bus, source or identity, timeout_s=1.0, retries=0,
                         service=service, security=security)


def _stranger(d: Daemon) -> Curve:
    """A CURVE key pair that is not in the daemon's key directory (a peer nobody allowed)."""
    outside = d.root / "outside-keys"
    if not (outside / "tradectl.key").exists():
        keys.generate(outside, "tradectl")
    return Curve(KeyStore(outside), "tradectl")


def _pinned(stranger: Curve, d: Daemon) -> Curve:
    """The stranger's own pair, pinning the daemon's real server keys (it knows the public ones)."""
    stranger.keys = KeyStore(d.keys_dir)
    return stranger


def _plain_call(d: Daemon, service: str, name: str, args: dict[str, Any]) -> bytes | None:
    """A request in the clear, as the issue's hostile peer sent it; the reply, or None."""
    sock = make_socket(d._ctx, zmq.DEALER, d.bus)
    try:
        sock.connect(d.endpoints.cmd(service))
        try:
            sock.send(proto.encode("tradectl", 1, 1, time.time_ns(), proto.Command(id=FORGED, name=name, args=args)),
                      flags=zmq.NOBLOCK)
        except zmq.Again:  # not even connected: CURVE refused the handshake (IMMEDIATE queues nothing)
            return None
        return sock.recv() if sock.poll(1000) else None
    finally:
        sock.close(linger=0)


# -- who is allowed --------------------------------------------------------------------------------


def test_a_good_key_is_served_and_a_key_outside_the_directory_or_none_is_not(module_daemon: Daemon) -> None:
    d = module_daemon
    assert d.call("orchestrator", "state").ok  # the harness: an operator's key of the directory
    stranger = _client(d, "orchestrator", identity="tradectl", security=_pinned(_stranger(d), d))
    with pytest.raises(CommandTimeout):
        stranger.call("state")
    stranger.close()
    assert _plain_call(d, "orchestrator", "state", {}) is None
    refused = ask(d, "orchestrator", "status")["bus"]
    assert refused["curve"]["refused_handshakes"] >= 1, refused


def test_a_reader_may_query_and_subscribe_but_not_command(module_daemon: Daemon) -> None:
    d = module_daemon
    reader = d.security("auditor", "reader")
    client = _client(d, "orchestrator", identity="auditor", security=reader)
    try:
        assert client.call("state").ok
        for name, args in (("open", {}), ("failsafe", {"reason": "reader"}), ("reset", {}), ("shutdown", {})):
            reply = client.call(name, args)
            assert not reply.ok and reply.error.startswith("not authorised: auditor (reader) may not call"), reply
        em = _client(d, "exchange_manager", identity="auditor", security=reader)
        # a key made a moment ago: the exchange manager's handshake knows it once its key store has
        # re-read the directory (within bus.keys.RELOAD_S); the client's handshake is retried meanwhile
        reply = em.call("submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 0.01, "strategy": "x"},
                        timeout_s=5.0)
        assert not reply.ok and "not authorised" in reply.error, reply
        em.close()
    finally:
        client.close()
    assert d.state() == "live"
    gov = (d.log_dir / "live").glob("governance_events_*.log")
    text = "".join(p.read_text() for p in gov)
    assert "unauthorised" in text and "auditor (reader) may not call open" in text, text[-2000:]


def test_rights_follow_the_registry_for_the_system_identities_too(module_daemon: Daemon) -> None:
    d = module_daemon
    # the engine submits orders but may not fail the session safe nor open it
    engine = _client(d, "orchestrator", identity="engine", security=d.security("engine"))
    reply = engine.call("failsafe", {"reason": "engine"})
    assert not reply.ok and "engine (engine) may not call failsafe" in reply.error, reply
    engine.close()
    # the venue takes orders from the exchange manager alone: not from an operator
    operator_at_venue = d.call("venue_sim", "new_order", client_order_id="op-1", symbol="BTC-USD", side="buy",
                               qty=0.01)
    assert not operator_at_venue.ok and "may not call new_order on venue_sim" in operator_at_venue.error
    assert "op-1" not in venue_fills(d)["client_order_ids"]


def test_the_envelope_source_must_be_the_authenticated_identity(module_daemon: Daemon) -> None:
    d = module_daemon
    # the harness's own key, claiming to be the orchestrator
    liar = _client(d, "engine", identity="itest", source="orchestrator", security=d.security())
    reply = liar.call("enable_trading", {})
    assert not reply.ok and "source 'orchestrator' is not the caller's identity 'itest'" in reply.error, reply
    liar.close()


def test_a_revoked_key_is_refused_on_its_open_connection(module_daemon: Daemon) -> None:
    d = module_daemon
    sec = d.security("temp-op", "operator")
    client = _client(d, "orchestrator", identity="temp-op", security=sec)
    assert client.call("state").ok
    keys.revoke(d.keys_dir, "temp-op")
    # refused once the server has re-read its directory (within keys.RELOAD_S)
    reply = wait_until(lambda: (r := client.call("state")) and not r.ok and r, 5 * keys.RELOAD_S + 1)
    assert "not authenticated" in reply.error, reply
    client.close()


def test_key_files_and_state_are_this_users_alone(module_daemon: Daemon) -> None:
    d = module_daemon
    assert stat.S_IMODE(d.keys_dir.stat().st_mode) == 0o700
    for path in d.keys_dir.glob("*.key_secret"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in [*d.state_dir.glob("*.sqlite*"), *d.run_dir.glob("*.cmd"), *d.run_dir.glob("*.pub")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO), (path, oct(mode))
    assert stat.S_IMODE(d.state_dir.stat().st_mode) == 0o700


# -- the forged scenarios -----------------------------------------------------------------


def test_forged_orders_and_session_commands_change_nothing(module_daemon: Daemon) -> None:
    d = module_daemon
    stranger = _pinned(_stranger(d), d)
    for service, name, args in (
            ("exchange_manager", "submit_order", {"symbol": "BTC-USD", "side": "buy", "qty": 0.5, "strategy": "x"}),
            ("orchestrator", "failsafe", {"reason": "forged"}),
            ("orchestrator", "reset", {}), ("orchestrator", "open", {}),
            ("venue_sim", "new_order", {"client_order_id": "forged-1", "symbol": "BTC-USD", "side": "buy", "qty": 1.0})):
        assert _plain_call(d, service, name, args) is None, (service, name)
        client = _client(d, service, identity="tradectl", security=stranger)
        with pytest.raises(CommandTimeout):
            client.call(name, args)
        client.close()
    assert d.state() == "live"
    assert "forged-1" not in venue_fills(d)["client_order_ids"]
    assert not [o for o in ask(d, "exchange_manager", "orders")["orders"] if o["strategy"] == "x"]


def test_an_order_straight_to_the_venue_during_failsafe_is_refused(daemon: Daemon) -> None:
    d = daemon
    d.wait_state("live", timeout=30)
    open_position(d)
    assert d.tradectl("failsafe", "--reason", "security test", "--wait").returncode == 0
    flat = venue_positions(d)
    for identity in ("itest", "tradectl", "orchestrator"):
        reply = d.call("venue_sim", "new_order", identity=identity, client_order_id=f"direct-{identity}",
                       symbol="SOL-USD", side="buy", qty=1.0)
        assert not reply.ok and "not authorised" in reply.error, (identity, reply)
    time.sleep(0.5)
    assert venue_positions(d) == flat == {}
    assert d.state() == "failsafe"


def test_a_squatter_on_the_orchestrators_endpoints_is_never_heard(daemon: Daemon) -> None:
    """After a kill -9 of the orchestrator in FAILSAFE, a process binds its endpoints first,
    publishes LIVE and tells the engine and the gate to trade: nothing trades, and the real
    orchestrator takes its endpoints back and resumes FAILSAFE from its journal."""
    d = daemon
    d.wait_state("live", timeout=30)
    assert d.tradectl("failsafe", "--reason", "squatter test", "--wait").returncode == 0
    fills_before = len(venue_fills(d)["fills"])
    old = d.kill9("orchestrator")
    ctx = zmq.Context()
    squat_pub = ctx.socket(zmq.PUB)
    squat_cmd = ctx.socket(zmq.ROUTER)
    stop = threading.Event()

    def squat() -> None:  # until the real orchestrator serves again: it must find them taken
        epoch = time.time_ns() + 10**12  # "newer" than anything
        seq = 0
        while not stop.is_set():
            seq += 1
            for topic, body in ((proto.topics.STATE, proto.StateChanged(
                                    old=proto.OrchestratorState.FAILSAFE, new=proto.OrchestratorState.LIVE,
                                    reason="squat", transition_no=10**6)),
                                (proto.topics.heartbeat("orchestrator"),
                                 proto.Heartbeat(pid=os.getpid(), interval_s=0.25, state=proto.OrchestratorState.LIVE,
                                                 trading_enabled=True))):
                squat_pub.send_multipart([topic.encode(), proto.encode("orchestrator", epoch, seq, time.time_ns(), body)])
            for service in ("engine", "exchange_manager"):
                _plain_call(d, service, "enable_trading", {})
            time.sleep(0.1)

    squat_pub.bind(d.endpoints.pub("orchestrator"))  # at once after the kill: before the restart binds
    squat_cmd.bind(d.endpoints.cmd("orchestrator"))
    squatter = threading.Thread(target=squat, daemon=True)
    squatter.start()
    try:
        new = d.wait_respawned("orchestrator", old)
        assert new != old
        d.wait_serving(["orchestrator"])
        time.sleep(1.0)  # the squatter goes on a while after the orchestrator is back
    finally:
        stop.set()
        squatter.join(5)
        squat_pub.close(linger=0)
        squat_cmd.close(linger=0)
        ctx.term()
    for service in ("engine", "exchange_manager"):
        assert not ask(d, service, "status")["stats"]["trading_allowed"], service
    assert d.state() == "failsafe"
    assert len(venue_fills(d)["fills"]) == fills_before
    assert "was served by a process that is not this run directory's orchestrator" in \
        d.program_log("orchestrator").read_text(errors="replace")
