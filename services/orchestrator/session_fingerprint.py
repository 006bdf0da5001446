"""The fingerprint of the settings that shape trading: a session runs under one configuration.

It is a hash of the canonical settings (``Settings.model_dump(mode="json")``, keys sorted) less the
fields that only say where and how the processes run. A start whose fingerprint differs from the
unfinished session's ends that session ("configuration changed") and begins a new one: its orders,
PnL and limits would otherwise be judged against rules it did not run under.

Left out, because changing them changes no trading decision and no limit:
  * ``paths`` (directories), ``bus`` (transport, ports, socket bounds, heartbeats, command
    timeouts), ``supervision`` (hung-process watch), ``logs`` (storm aggregation),
    ``session.resume_after_stop`` (lifecycle);
  * the orchestrator's plumbing: metrics host and port, journal file, session-log sizes, disk
    checks, command timeouts and retries, how often health is assessed, alert sinks;
  * the exchange manager's journal file and fsync policy, each connector's timeouts and reconnect
    pacing.
Everything else counts, new fields included: a field added later changes the fingerprint unless it
is listed here, so the mistake that can happen is a session ended for nothing (safe, and said in
the session log), never a session resumed under rules it did not start with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.settings import Settings

EXCLUDED_SECTIONS = frozenset({"paths", "bus", "supervision", "logs"})
EXCLUDED_FIELDS: dict[str, frozenset[str]] = {
    "session": frozenset({"resume_after_stop"}),
    "orchestrator": frozenset({"metrics_host", "metrics_port", "journal_file", "session_log_max_bytes",
                               "session_log_backups", "session_log_budget_mb", "min_free_disk_mb", "disk_check_interval_s",
                               "command_timeout_s", "command_retries", "health_check_interval_s"}),
    "orchestrator.failsafe": frozenset({"webhook_url", "alert_command", "alert_timeout_s"}),
    "orchestrator.health": frozenset({"degraded_check_interval_s"}),
    "exchange_manager": frozenset({"journal_file", "fsync_per_order"}),
    "exchange_manager.connectors": frozenset({"request_timeout_s", "heartbeat_timeout_s", "reconnect_initial_s",
                                              "reconnect_max_s", "reconnect_jitter"}),
}
LENGTH = 12  # hex digits shown and compared: 48 bits, ample to tell configurations apart


def trading_settings(settings: Settings) -> dict[str, Any]:
    """The canonical settings that shape trading (what the fingerprint hashes)."""
    dump = settings.model_dump(mode="json")
    return {section: _strip(section, value) for section, value in dump.items() if section not in EXCLUDED_SECTIONS}


def fingerprint(settings: Settings) -> str:
    canonical = json.dumps(trading_settings(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:LENGTH]


def _strip(where: str, value: Any) -> Any:
    if isinstance(value, list):
        return [_strip(where, item) for item in value]
    if not isinstance(value, dict):
        return value
    excluded = EXCLUDED_FIELDS.get(where, frozenset())
    return {key: _strip(f"{where}.{key}", item) for key, item in value.items() if key not in excluded}
