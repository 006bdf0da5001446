"""CURVE on every socket: a process's own key pair, the peers' keys it pins, and its ZAP handler.

A process that binds (every service: its PUB and command sockets) is a CURVE server: ZeroMQ asks its
ZAP handler (pyzmq's ``ThreadAuthenticator``, one per process) about each connecting client's key,
and the handler accepts only keys of the key directory (``bus.keys``). The key is the ``User-Id`` of
every message the client sends: the command server finds its identity by it, message by message,
and checks the command's rights and the envelope's ``source`` (``bus.command_server``).

A process that connects is a CURVE client of each peer, pinning the peer's public key: a process
without the orchestrator's secret key cannot pose as the orchestrator, even one that bound the
orchestrator's endpoint first (its handshake fails; nothing it sends is read).

``NoCurve`` is the same interface with CURVE off (``bus.curve = false``, ipc only): nothing is
authenticated and a caller is who its envelope says (the run directory's 0700 mode is then the
only guard). It exists for the benchmarks' comparison and for the tests of the refusal itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from bus.keys import Identity, KeyStore, MissingKey
from bus.ratelimit import RateLimitedLog
from bus.settings import BusSettings
from proto.commands.base import IDENTITIES

log = logging.getLogger(__name__)

DOMAIN = "trading"  # the ZAP domain of every server socket
# ZMQ_MAXMSGSIZE applies to the handshake's commands too, and a CURVE client's INITIATE is 276 bytes
# (measured, libzmq 4.3.5, a SUB): a PUB socket's limit of one subscription frame (~80 bytes,
# bus.sockets) would drop every CURVE connection. So a CURVE PUB takes frames up to this, with a
# margin for metadata; encrypted, that is a subscription prefix of at most ~275 bytes (43 bytes of
# CURVE framing), still a bound (``bus.subscription_guard``), from authenticated peers only.
HANDSHAKE_FRAME_BYTES = 320
# What CURVE adds to a frame's bytes on the wire (a MESSAGE command: name, nonce, flags and MAC);
# a ZMTP 3.1 subscription's own 10 bytes ("\x09SUBSCRIBE") come on top.
CURVE_MESSAGE_OVERHEAD = 33


class NoCurve:
    """Sockets in the clear (``bus.curve = false``): a caller is named by its envelope, and has the
    role of that name (a system identity's, or the role in that name's public file in ``keys``)."""

    enabled = False
    refused_handshakes = 0

    def __init__(self, keys: KeyStore | None = None) -> None:
        self._keys = keys

    def serve(self, sock: zmq.Socket) -> None:
        pass

    def pin(self, sock: zmq.Socket, server: str) -> None:
        pass

    def connect(self, sock: zmq.Socket, endpoint: str, server: str) -> None:
        sock.connect(endpoint)

    def identity(self, user_id: str | None, source: str) -> Identity | None:
        if source in IDENTITIES:
            return Identity(source, IDENTITIES[source], b"")
        return self._keys.named(source) if self._keys is not None else None

    def start(self, ctx: zmq.Context) -> None:
        pass

    def stop(self) -> None:
        pass


class Curve:
    """One process's CURVE credentials (identity ``name``, its pair in ``keys``) and ZAP handler."""

    enabled = True

    def __init__(self, keys: KeyStore, name: str) -> None:
        self.keys = keys
        self.name = name
        self.public, self.secret = keys.key_pair(name)  # MissingKey: the process cannot start
        self.refused_handshakes = 0
        self._auth: _Authenticator | None = None

    def serve(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server (before it binds); its clients are checked by ``start``'s handler."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        sock.zap_domain = DOMAIN.encode()
        if sock.type in (zmq.PUB, zmq.XPUB):
            sock.setsockopt(zmq.MAXMSGSIZE, max(sock.getsockopt(zmq.MAXMSGSIZE), HANDSHAKE_FRAME_BYTES))

    def pin(self, sock: zmq.Socket, server: str) -> None:
        """Make ``sock`` a CURVE client of ``server`` (before it connects): only the holder of that
        identity's secret key can complete the handshake."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.keys.public_key(server)

    def connect(self, sock: zmq.Socket, endpoint: str, server: str) -> None:
        """Connect to ``server`` at ``endpoint``; one socket may connect to several servers (a SUB to
        every publisher): ZeroMQ takes the server key in force at each connect."""
        self.pin(sock, server)
        sock.connect(endpoint)

    def identity(self, user_id: str | None, source: str) -> Identity | None:
        """The authenticated caller of a message whose ZAP ``User-Id`` (its public key, Z85) is
        ``user_id``; None if not authenticated, or its key was revoked since it connected (also
        when a new key has been made under the same name since: the key is checked, not the name)."""
        return self.keys.identity_of(user_id.encode()) if user_id else None

    def start(self, ctx: zmq.Context) -> None:
        """Start the ZAP handler of ``ctx`` (once; a process that binds nothing needs none)."""
        if self._auth is None:
            self._auth = _Authenticator(ctx, self)
            self._auth.start()
            self._auth.configure_curve_callback(DOMAIN, credentials_provider=self._auth)

    def stop(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None


Security = Curve | NoCurve


def security(bus: BusSettings, keys_dir: Path, name: str) -> Security:
    """The process ``name``'s security as the settings say; ``MissingKey`` if its pair is missing."""
    if not bus.curve:
        return NoCurve(KeyStore(keys_dir))
    return Curve(KeyStore(keys_dir), name)


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler with the key directory as its allow-list and identities as User-Ids.
    Its thread dies on an exception, and every handshake after that would hang: nothing here raises."""

    def __init__(self, ctx: zmq.Context, curve: Curve) -> None:
        super().__init__(ctx, log=logging.getLogger("bus.zap"))
        self._curve = curve
        self._refusals = RateLimitedLog(log)

    def callback(self, domain: str, key: bytes) -> bool:  # the credentials provider's
        try:
            if self._curve.keys.identity_of(key) is not None:
                return True
            self._curve.refused_handshakes += 1
            self._refusals.warning("unknown_key", f"{self._curve.name}: refused a connection whose key "
                                                  f"{key[:8].decode('ascii', 'replace')}... is not in "
                                                  f"{self._curve.keys.directory} (unknown or revoked)")
        except Exception:  # noqa: BLE001  (see the class)
            log.exception("ZAP check failed; connection refused")
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        # the key itself (Z85): the command server finds the identity by it, message by message
        return z85.encode(client_public_key).decode("ascii")


__all__ = ["Curve", "DOMAIN", "MissingKey", "NoCurve", "Security", "security"]
