"""The CURVE key store: one key pair per identity, in one private directory.

``<keys_dir>/<identity>.key`` holds an identity's public key and role, ``<identity>.key_secret``
its secret key too (ZeroMQ's certificate format, read by ``zmq.auth.load_certificate``). The
directory is 0700 and the secret files 0600: ``generate`` makes them so and ``KeyStore`` refuses to
read a secret that others can read. On one host every identity's pair is here (``make run`` creates
the missing ones); across hosts each host holds its own processes' secrets and every peer's public
file (docs/deploy-multihost.md).

The public files are the allow-list: a server accepts a client whose key is one of them, and knows
it by the file's name. ``revoke`` moves an identity's files to ``revoked/``; servers re-read the
directory when it changes (at most every ``RELOAD_S``), so a revoked key is refused from then on.

The role of an identity is fixed for the system's own names (``proto.commands.base.IDENTITIES``);
any other key says its role (``operator`` or ``reader``) in its public file, written by the operator
who generated it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

from proto.commands.base import IDENTITIES, PERSON_ROLES

log = logging.getLogger(__name__)

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
REVOKED_DIR = "revoked"
RELOAD_S = 0.5  # how soon a running server sees a revoked or added key
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_FIELD = re.compile(r'^\s+([a-z-]+)\s*=\s*"?([^"]*)"?\s*$')


class MissingKey(Exception):
    """A key that is missing, unreadable or not private; the message says which and what to do."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    public: bytes  # Z85, 40 bytes


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def role_for(name: str, role: str | None = None) -> str:
    """The role a key named ``name`` has: its system role, or ``role`` (operator or reader)."""
    if name in IDENTITIES:
        if role not in (None, IDENTITIES[name]):
            raise ValueError(f"{name} is one of the system's identities; its role is {IDENTITIES[name]}")
        return IDENTITIES[name]
    if role not in PERSON_ROLES:
        raise ValueError(f"a key for {name!r} needs --role {' or '.join(PERSON_ROLES)}")
    return role


def ensure_private(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def generate(directory: Path, name: str, role: str | None = None) -> Identity:
    """A new key pair for ``name`` (replacing none: an existing pair is an error; revoke it first)."""
    if not valid_name(name):
        raise ValueError(f"bad identity name {name!r}: lowercase letters, digits, '-' and '_', at most 40")
    role = role_for(name, role)
    ensure_private(directory)
    public_path = directory / f"{name}{PUBLIC_SUFFIX}"
    if public_path.exists():
        raise FileExistsError(f"{public_path} exists: `tradectl keys revoke {name}` first")
    public, secret = zmq.curve_keypair()
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    head = f"#   ZeroMQ CURVE {{}} Certificate of {name}, made {stamp}\n\nmetadata\n    role = \"{role}\"\ncurve\n"
    _write(directory / f"{name}{SECRET_SUFFIX}", head.format("**Secret**")
           + f'    public-key = "{public.decode()}"\n    secret-key = "{secret.decode()}"\n', 0o600)
    _write(public_path, head.format("Public") + f'    public-key = "{public.decode()}"\n', 0o644)
    return Identity(name, role, public)


def ensure(directory: Path, names: list[str] | tuple[str, ...]) -> list[Identity]:
    """Generate the pairs of ``names`` (system identities) that are missing; returns the new ones."""
    return [generate(directory, name) for name in names if not (directory / f"{name}{PUBLIC_SUFFIX}").exists()]


def revoke(directory: Path, name: str) -> list[Path]:
    """Move ``name``'s files to ``revoked/`` (kept, stamped); servers refuse its key from then on."""
    moved = []
    target = ensure_private(directory / REVOKED_DIR)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for suffix in (PUBLIC_SUFFIX, SECRET_SUFFIX):
        path = directory / f"{name}{suffix}"
        if path.exists():
            dest = target / f"{name}.{stamp}{suffix}"
            path.rename(dest)
            moved.append(dest)
    if not moved:
        raise FileNotFoundError(f"no key named {name!r} in {directory}")
    return moved


def _write(path: Path, text: str, mode: int) -> None:
    """Whole or not at all: written under a name no reader globs, then renamed into place (a server
    re-reading the directory never sees a file half written, and sees the rename as a change)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)  # whatever the umask
    os.rename(tmp, path)


def _fields(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _FIELD.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


class KeyStore:
    """The identities of a key directory, by public key, re-read when the directory changes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._by_key: dict[bytes, Identity] = {}
        self._by_name: dict[str, Identity] = {}
        self._mtime_ns = -1
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        try:
            mtime = self.directory.stat().st_mtime_ns
        except OSError:
            mtime = 0
        self._checked = time.monotonic()
        if mtime == self._mtime_ns:
            return
        self._mtime_ns = mtime
        by_key: dict[bytes, Identity] = {}
        by_name: dict[str, Identity] = {}
        for path in sorted(self.directory.glob(f"*{PUBLIC_SUFFIX}")) if mtime else []:
            name = path.name[:-len(PUBLIC_SUFFIX)]
            try:
                fields = _fields(path)
                public = fields["public-key"].encode()
                role = role_for(name, fields.get("role"))
                if len(public) != 40:
                    raise ValueError("not a 40-character Z85 key")
            except (OSError, UnicodeDecodeError, KeyError, ValueError) as exc:
                log.warning("key file %s ignored: %s", path, exc)
                continue
            if public in by_key:
                log.warning("key file %s ignored: the same key as %s", path, by_key[public].name)
                continue
            by_key[public] = by_name[name] = Identity(name, role, public)
        self._by_key, self._by_name = by_key, by_name

    def identity_of(self, public: bytes) -> Identity | None:
        """Who holds this public key (Z85), or None: unknown or revoked."""
        return self._lookup(lambda: self._by_key.get(public))

    def named(self, name: str) -> Identity | None:
        return self._lookup(lambda: self._by_name.get(name))

    def _lookup(self, find: Callable[[], Identity | None]) -> Identity | None:
        # Re-read when the directory changed: at most every RELOAD_S for a key known here (a revoked
        # one goes within that), at once for one not known yet (a key just added is found; an
        # unknown key costs a stat of the directory, no more, unless the directory changed).
        if time.monotonic() - self._checked >= RELOAD_S:
            self.reload()
        found = find()
        if found is None:
            self.reload()
            found = find()
        return found

    def identities(self) -> list[Identity]:
        self.reload()
        return sorted(self._by_name.values(), key=lambda i: i.name)

    def public_key(self, name: str) -> bytes:
        ident = self.named(name)
        if ident is None:
            raise MissingKey(f"no public key of {name!r} in {self.directory} (`tradectl keys generate` on its "
                             f"host, then copy {name}{PUBLIC_SUFFIX} here)")
        return ident.public

    def key_pair(self, name: str) -> tuple[bytes, bytes]:
        """``name``'s own (public, secret) pair; ``MissingKey`` if absent or readable by others."""
        path = self.directory / f"{name}{SECRET_SUFFIX}"
        try:
            mode = path.stat().st_mode
        except OSError:
            raise MissingKey(f"no key pair for {name!r} in {self.directory}: `tradectl keys generate {name}` "
                             f"(make run creates the system's own)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MissingKey(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600 it, and "
                             f"think of it as leaked")
        fields = _fields(path)
        try:
            return fields["public-key"].encode(), fields["secret-key"].encode()
        except KeyError:
            raise MissingKey(f"{path} is not a secret key file") from None
