"""Who may use the console: passwords, login sessions, the CSRF token, and the brake on guessing.

A console user is a bus identity: ``alice`` logs in with her console password, and every control she
presses is sent with her CURVE key (``bus/keys.py``), so the orchestrator checks her rights and
writes her name in the governance log, exactly as for ``tradectl`` run as her. Her role (operator or
reader) is her key's: revoking the key (``tradectl keys revoke alice``) ends her console too.

Passwords live in ``<state_dir>/console/users.json`` (0600, in a 0700 directory) as scrypt hashes.
On the first start, with no users file, the console makes the user ``admin`` (an operator's key,
generated if missing) with a random password, writes that password to
``<state_dir>/console/admin.password`` (0600) and prints it once in its log; ``tradectl console
add-user NAME --role reader`` adds others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from bus import keys

USERS_FILE = "users.json"
FIRST_USER = "admin"
# scrypt at n=2**14, r=8: ~16 MB and ~50 ms a check, which makes guessing slow and costs a login
# little. The parameters are stored with each hash, so they can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N) -> dict[str, object]:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 << 20)
    return {"salt": salt.hex(), "n": n, "hash": digest.hex()}


def password_matches(password: str, stored: dict[str, object]) -> bool:
    try:
        salt, n, expected = bytes.fromhex(str(stored["salt"])), int(str(stored["n"])), str(stored["hash"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(hash_password(password, salt, n)["hash"], expected)  # type: ignore[arg-type]


def write_private(path: Path, text: str) -> None:
    """Whole or not at all, 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class Users:
    """The console's users and their password hashes; roles come from the users' keys."""

    def __init__(self, directory: Path, keys_dir: Path) -> None:
        self.directory = directory
        self.keys = keys.KeyStore(keys_dir)
        self._keys_dir = keys_dir

    @property
    def path(self) -> Path:
        return self.directory / USERS_FILE

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise ValueError(f"{self.path}: not a console users file (no \"users\" object)")
        return users

    def _write(self, users: dict[str, dict[str, object]]) -> None:
        keys.ensure_private(self.directory)
        write_private(self.path, json.dumps({"users": users}, indent=2, sort_keys=True))

    def names(self) -> list[str]:
        return sorted(self._read())

    def add(self, name: str, role: str | None, password: str | None = None) -> str:
        """Add ``name`` (or set a new password); make its key if it has none. Returns the password."""
        if name in keys.IDENTITIES:
            raise ValueError(f"{name} is one of the system's identities; a person needs a key of their own")
        if self.keys.named(name) is None:
            keys.generate(self._keys_dir, name, role)
        elif role is not None and self.keys.named(name).role != role:  # type: ignore[union-attr]
            raise ValueError(f"{name}'s key has the role {self.keys.named(name).role}; "  # type: ignore[union-attr]
                             f"revoke it (`tradectl keys revoke {name}`) to give another")
        password = password or secrets.token_urlsafe(18)
        users = self._read()
        users[name] = hash_password(password)
        self._write(users)
        return password

    def remove(self, name: str) -> None:
        users = self._read()
        if users.pop(name, None) is None:
            raise KeyError(f"no console user {name!r}")
        self._write(users)

    def ensure_first(self) -> tuple[str, Path] | None:
        """On the first start (no users file): the user ``admin`` with a random password, written to
        a 0600 file. Returns (password, file) when it made them, else None."""
        if self.path.exists():
            return None
        password = self.add(FIRST_USER, "operator" if self.keys.named(FIRST_USER) is None else None)
        path = self.directory / f"{FIRST_USER}.password"
        write_private(path, password + "\n")
        return password, path

    def role_of(self, name: str) -> str | None:
        """The role of a user who may still log in: in the users file, her key not revoked."""
        if name not in self._read():
            return None
        ident = self.keys.named(name)
        return ident.role if ident is not None else None

    def check(self, name: str, password: str) -> str | None:
        """The user's role if the password is right and the user's key is still allowed, else None.
        The hash is computed even for an unknown user, so timing does not tell which names exist."""
        stored = self._read().get(name)
        matches = password_matches(password, stored or _DECOY)
        if stored is None or not matches:
            return None
        ident = self.keys.named(name)
        return ident.role if ident is not None else None


_DECOY = hash_password("decoy", b"\0" * 16)


@dataclass
class Login:
    token: str
    user: str
    role: str
    csrf: str
    started: float
    last_seen: float


class Sessions:
    """Login sessions in memory (a console restart logs everyone out), bounded: the oldest goes."""

    def __init__(self, idle_s: float, max_s: float, max_sessions: int) -> None:
        self._idle_s, self._max_s, self._max = idle_s, max_s, max_sessions
        self._logins: OrderedDict[str, Login] = OrderedDict()

    def open(self, user: str, role: str) -> Login:
        now = time.monotonic()
        login = Login(secrets.token_urlsafe(32), user, role, secrets.token_urlsafe(32), now, now)
        self._logins[login.token] = login
        while len(self._logins) > self._max:
            self._logins.popitem(last=False)
        return login

    def get(self, token: str | None) -> Login | None:
        """The live login of ``token`` (and it counts as activity), or None: unknown or expired."""
        login = self._logins.get(token or "")
        if login is None:
            return None
        now = time.monotonic()
        if now - login.last_seen > self._idle_s or now - login.started > self._max_s:
            del self._logins[login.token]
            return None
        login.last_seen = now
        return login

    def close(self, token: str) -> None:
        self._logins.pop(token, None)


def csrf_ok(login: Login, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(login.csrf.encode(), (sent or "").encode())


class LoginThrottle:
    """Failed logins per address and per user name: past ``max_failures`` within ``window_s``,
    logins from there (or as that user) are refused for ``lockout_s``. Bounded: at most
    ``max_keys`` addresses and names are remembered (the oldest forgotten first)."""

    def __init__(self, max_failures: int, window_s: float, lockout_s: float, max_keys: int = 10_000) -> None:
        self._max, self._window, self._lockout, self._max_keys = max_failures, window_s, lockout_s, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._locked: dict[str, float] = {}
        self.refused = 0
        self.failed = 0

    def wait_s(self, *keys_: str) -> float:
        """Seconds until a login for these keys is taken again (0: now)."""
        now = time.monotonic()
        until = max((self._locked.get(k, 0.0) for k in keys_), default=0.0)
        return max(0.0, until - now)

    def failure(self, *keys_: str) -> None:
        now = time.monotonic()
        self.failed += 1
        for key in keys_:
            times = self._failures.pop(key, None) or deque(maxlen=self._max)
            times.append(now)
            self._failures[key] = times
            if len(times) >= self._max and now - times[0] <= self._window:
                self._locked[key] = now + self._lockout
                times.clear()
        while len(self._failures) > self._max_keys:
            old, _ = self._failures.popitem(last=False)
            self._locked.pop(old, None)
        for key in [k for k, until in self._locked.items() if until < now]:
            del self._locked[key]

    def success(self, *keys_: str) -> None:
        for key in keys_:
            self._failures.pop(key, None)
