"""Binance's request signing, as its REST API and its WebSocket API both check it: the account's API
key, an HMAC-SHA256 of the request's parameters under the account's secret, and a timestamp within
``recvWindow`` of the venue's clock.

The two faces carry the same three things differently: REST the key in the ``X-MBX-APIKEY`` header
and the signature at the end of the query (over the query as sent), the WebSocket API the key among
the parameters and the signature over every other parameter sorted by name
(https://developers.binance.com/docs/binance-spot-api-docs/websocket-api/request-security). Either
way the checks, their order and their refusals are these.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from services.venue_sim.exchange_api.binance import ApiError

BAD_KEY = ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
BAD_SIGNATURE = ApiError(-1022, "Signature for this request is not valid.")
STALE = ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")


def sign(payload: str, secret: str) -> str:
    """The signature Binance expects of ``payload`` (hex HMAC-SHA256 under ``secret``)."""
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def ws_payload(params: dict[str, str]) -> str:
    """What a WebSocket API request signs: every parameter but the signature, sorted by name, as
    ``name=value`` joined by ``&`` (values as sent)."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "signature")


class Signatures:
    """The account's key pair and the checks of one signed request; each refusal is counted by
    reason (``count``) before it is raised."""

    def __init__(self, api_key: str, secret: str, recv_window_ms: int, count: Callable[[str], None]) -> None:
        self._key = api_key.encode()
        self._secret = secret
        self._recv_window_ms = recv_window_ms
        self._count = count

    def check(self, key: str, payload: str, signature: str, params: dict[str, str]) -> None:
        """Raise Binance's refusal unless ``key`` is the account's, ``signature`` is ``payload``'s and
        ``params``' timestamp is within its ``recvWindow`` (60 s at most, as Binance allows)."""
        if not hmac.compare_digest(key.encode(), self._key):
            self._count("bad_key")
            raise BAD_KEY
        if not payload or not hmac.compare_digest(signature.encode(), sign(payload, self._secret).encode()):
            self._count("bad_signature")
            raise BAD_SIGNATURE
        try:
            stamp = int(params.get("timestamp", ""))
            window = int(params.get("recvWindow", self._recv_window_ms))
        except ValueError:
            self._count("stale")
            raise STALE from None
        now = time.time_ns() // 1_000_000
        if stamp > now + 1000 or now - stamp > min(window, 60_000):
            self._count("stale")
            raise STALE
