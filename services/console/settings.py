"""Console settings (section ``[console]``, env ``TRADING_CONSOLE__<FIELD>``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Loopback by default: on a remote host, reach it through an SSH tunnel (docs/console.md). Any
    # other address serves the login page to that network, over plain HTTP.
    host: str = "127.0.0.1"
    port: int = Field(default=47080, ge=1024, le=65535)
    # A login lasts this long without a request, and at most max_session_s in all.
    session_idle_s: float = Field(default=1800.0, gt=0)
    session_max_s: float = Field(default=12 * 3600.0, gt=0)
    max_sessions: int = Field(default=200, ge=1)
    # Wrong passwords: after this many from one address or for one user within the window, logins
    # from there (or for that user) are refused for lockout_s.
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    login_lockout_s: float = Field(default=60.0, gt=0)
    # How often the console asks the orchestrator and the exchange manager for the session's
    # snapshot (status, counters, positions, orders); events arrive on the bus as they happen.
    poll_interval_s: float = Field(default=1.0, ge=0.1)
    # Price history kept per symbol, at one point per price_bucket_s (last, lowest, highest mid).
    price_bucket_s: float = Field(default=0.25, gt=0)
    price_history_s: float = Field(default=4 * 3600.0, gt=0)
    max_symbols: int = Field(default=64, ge=1)
    # The events timeline and the PnL series kept in memory (oldest dropped first).
    max_events: int = Field(default=5_000, ge=10)
    pnl_sample_s: float = Field(default=5.0, gt=0)
    # How long a control waits for the orchestrator's answer (close and shutdown write a report).
    control_timeout_s: float = Field(default=30.0, gt=0)
