"""A ccxt connector's API key and secret: from the environment or a 0600 file, never from the
settings file, never logged (``Credentials`` prints as its key's last four characters)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field

from services.venues.settings import CcxtConnectorSettings


class CredentialsError(ValueError):
    """The settings name credentials that cannot be read, or a file others may read."""


@dataclass(frozen=True)
class Credentials:
    api_key: str = field(repr=False)
    secret: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(api_key=...{self.api_key[-4:]})" if self.api_key else "Credentials(none)"

    def as_ccxt(self) -> dict[str, str]:
        return {"apiKey": self.api_key, "secret": self.secret} if self.api_key else {}


def load(cfg: CcxtConnectorSettings) -> Credentials:
    """``cfg``'s credentials; none when it names none (public data only)."""
    if cfg.credentials_file is not None:
        path = cfg.credentials_file
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CredentialsError(f"{path}: readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CredentialsError(f"{path}: {exc.strerror or exc}") from None
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get("apiKey"), str) or not isinstance(data.get("secret"), str):
            raise CredentialsError(f'{path}: expected {{"apiKey": "...", "secret": "..."}}')
        return Credentials(data["apiKey"], data["secret"])
    names = [n for n in (cfg.api_key_env, cfg.secret_env) if n]
    if not names:
        return Credentials("", "")
    missing = [n for n in names if not os.environ.get(n)]
    if missing or len(names) != 2:
        raise CredentialsError(f"connector {cfg.name}: set both api_key_env and secret_env, and the variables "
                               f"they name ({', '.join(missing) or 'one is not named'})")
    return Credentials(os.environ[cfg.api_key_env or ""], os.environ[cfg.secret_env or ""])
