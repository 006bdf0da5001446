"""The key store (bus/keys.py), CURVE on real sockets (bus/curve.py), and the exposure rule."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq

from bus import (BusSettings, CommandClient, CommandServer, CommandTimeout, Curve, KeyStore, MissingKey, Reactor, keys,
                 make_socket)
from services.settings import SettingsError, load_settings


def test_generate_makes_private_files_and_roles(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    made = keys.ensure(directory, ["engine", "tradectl"])
    assert [i.name for i in made] == ["engine", "tradectl"] and made[1].role == "operator"
    assert keys.ensure(directory, ["engine"]) == []  # nothing missing, nothing made
    alice = keys.generate(directory, "alice", "reader")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("engine", "tradectl", "alice"):
        assert stat.S_IMODE((directory / f"{name}.key_secret").stat().st_mode) == 0o600
    store = KeyStore(directory)
    assert store.identity_of(alice.public) == alice and store.named("engine").role == "engine"
    assert zmq.auth.load_certificate(directory / "alice.key_secret")[0] == alice.public  # ZeroMQ's format
    assert not list(directory.glob(".*"))  # no temporary file left


@pytest.mark.parametrize("name, role, why", [
    ("bob", None, "needs --role"), ("bob", "engine", "needs --role"), ("engine", "operator", "system's identities"),
    ("Bad Name", "reader", "bad identity name"), ("x" * 41, "reader", "bad identity name")])
def test_generate_refuses_what_would_grant_too_much(tmp_path: Path, name: str, role: str | None, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        keys.generate(tmp_path, name, role)


def test_a_promoted_or_broken_public_file_is_ignored(tmp_path: Path) -> None:
    keys.generate(tmp_path, "alice", "reader")
    text = (tmp_path / "alice.key").read_text()
    (tmp_path / "mallory.key").write_text(text.replace('role = "reader"', 'role = "engine"'))  # a copy, promoted
    (tmp_path / "junk.key").write_text("not a certificate\n")
    store = KeyStore(tmp_path)
    assert [i.name for i in store.identities()] == ["alice"]


def test_revoke_takes_effect_for_a_running_store(tmp_path: Path) -> None:
    alice = keys.generate(tmp_path, "alice", "operator")
    store = KeyStore(tmp_path)
    assert store.identity_of(alice.public) is not None
    moved = keys.revoke(tmp_path, "alice")
    assert all(p.parent.name == keys.REVOKED_DIR for p in moved)
    deadline = time.monotonic() + 5 * keys.RELOAD_S
    while store.identity_of(alice.public) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.identity_of(alice.public) is None
    with pytest.raises(FileNotFoundError):
        keys.revoke(tmp_path, "alice")


def test_a_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys.generate(tmp_path, "engine")
    os.chmod(tmp_path / "engine.key_secret", 0o644)
    with pytest.raises(MissingKey, match="readable by others"):
        KeyStore(tmp_path).key_pair("engine")
    with pytest.raises(MissingKey, match="no key pair for 'safety'"):
        KeyStore(tmp_path).key_pair("safety")


def test_curve_serves_known_keys_and_checks_each_callers_rights(tmp_path: Path, ipc_dir: Path,
                                                                ctx: zmq.Context) -> None:
    directory = tmp_path / "keys"
    keys.ensure(directory, ["engine", "tradectl", "sniffer"])
    keys.generate(tmp_path / "other", "tradectl")
    server = Curve(KeyStore(directory), "engine")
    server.start(ctx)
    sock = make_socket(ctx, zmq.ROUTER, BusSettings())
    server.serve(sock)
    endpoint = f"ipc://{ipc_dir}/engine.cmd"
    sock.bind(endpoint)
    status = {"service": "engine", "pid": os.getpid(), "epoch": 1, "stats": None, "bus": {}}
    cmd = CommandServer(sock, "engine", 1, {"status": lambda _args: status}, security=server)
    reactor = Reactor()
    reactor.add_reader(sock, cmd.drain)
    thread = threading.Thread(target=reactor.run, daemon=True)
    thread.start()

    def client(name: str, store: KeyStore, timeout_s: float = 2.0) -> CommandClient:
        sec = Curve(store, name)
        sec.keys = KeyStore(directory)  # the server's public key, from the directory
        return CommandClient(ctx, endpoint, BusSettings(), name, timeout_s=timeout_s, retries=0, service="engine",
                             security=sec)

    operator = client("tradectl", KeyStore(directory))
    reader = client("sniffer", KeyStore(directory))
    stranger = client("tradectl", KeyStore(tmp_path / "other"), timeout_s=0.5)
    try:
        assert operator.call("status").ok and reader.call("status").ok
        # authorised (an operator may switch trading): past the check, to the missing handler
        assert operator.call("enable_trading", {}).error.startswith("unknown command 'enable_trading'")
        reply = reader.call("enable_trading", {})
        assert not reply.ok and "sniffer (reader) may not call enable_trading on engine" in reply.error
        with pytest.raises(CommandTimeout):
            stranger.call("status")
        assert server.refused_handshakes >= 1
        assert cmd.rejected == {"unknown_command": 1, "unauthorised": 1}
    finally:
        for c in (operator, reader, stranger):
            c.close()
        reactor.stop()
        thread.join(5)
        sock.close(linger=0)
        server.stop()


def test_tcp_without_curve_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_BUS__TRANSPORT", "tcp")
    monkeypatch.setenv("TRADING_BUS__CURVE", "false")
    with pytest.raises(SettingsError, match="unauthenticated"):
        load_settings()
    monkeypatch.setenv("TRADING_BUS__CURVE", "true")
    assert load_settings().bus.transport == "tcp"
