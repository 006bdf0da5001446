"""What the orchestrator knows of every other process, from the messages it hears from them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TypeVar

import proto

PEERS = ("exchange_manager", "engine", "data_router", "safety")  # the processes the session needs
TRADING_PEERS = ("engine", "exchange_manager")  # those told whether to trade


S = TypeVar("S", bound=proto.summaries.Summary)


@dataclass
class Component:
    name: str
    pid: int | None = None
    epoch: int | None = None
    last_seen: float | None = None  # time.monotonic() of any message from it
    restarts: int = 0  # new epochs seen after the first
    trading_enabled: bool = False
    stats: proto.summaries.ServiceSummary | None = None  # its latest heartbeat's summary
    stats_at: float | None = None  # time.monotonic() of the heartbeat that brought ``stats``
    # supervisord gave up on it (FATAL, from the event listener): missing for good until it is
    # heard from again with a new epoch (an operator started it).
    fatal: bool = False
    # (epoch, sequence number) of its last event on a topic before it was last reset: what it
    # published up to there was raised before the reset (the safety process's, on recovery).
    reset_mark: tuple[int, int] | None = None

    def before_reset(self, env: proto.Envelope) -> bool:
        """Whether ``env`` was published before this component's last reset (``reset_mark``)."""
        return self.reset_mark is not None and (env.epoch, env.seq) <= self.reset_mark

    def summary(self, kind: type[S]) -> S:
        """Its latest summary; before its first heartbeat an empty one, whose every check fails
        closed (nothing reconciled, nothing counted)."""
        return self.stats if isinstance(self.stats, kind) else kind()


class ComponentTracker:
    def __init__(self, names: tuple[str, ...], missing_after_s: float) -> None:
        self.components = {name: Component(name) for name in names}
        self._missing_after_s = missing_after_s
        self._started = time.monotonic()

    def heard(self, env: proto.Envelope) -> None:
        """Any message counts as liveness; a heartbeat also brings pid and stats."""
        comp = self.components.get(env.source)
        if comp is None:
            return
        comp.last_seen = time.monotonic()
        if comp.epoch != env.epoch:
            if comp.epoch is not None and env.epoch > comp.epoch:
                comp.restarts += 1
                comp.fatal = False
            if comp.epoch is None or env.epoch > comp.epoch:
                comp.epoch = env.epoch
        body = env.body
        if isinstance(body, proto.Heartbeat):
            comp.pid = body.pid
            comp.trading_enabled = body.trading_enabled
            comp.stats = body.stats
            comp.stats_at = comp.last_seen

    def mark_fatal(self, name: str) -> bool:
        """Record that supervisord gave up on ``name``; False if it is not a tracked process."""
        comp = self.components.get(name)
        if comp is None:
            return False
        comp.fatal = True
        return True

    def gone_for_good(self, after_s: float | None) -> list[str]:
        """Processes FATAL under supervisord, or (with ``after_s``) silent for longer than that."""
        return [name for name, comp in self.components.items()
                if comp.fatal or (after_s is not None and comp.last_seen is not None
                                  and time.monotonic() - comp.last_seen > after_s)]

    def age_s(self, name: str) -> float | None:
        seen = self.components[name].last_seen
        return None if seen is None else time.monotonic() - seen

    def alive(self, name: str) -> bool:
        age = self.age_s(name)
        return age is not None and age < self._missing_after_s and not self.components[name].fatal

    def not_alive(self) -> list[str]:
        return [name for name in self.components if not self.alive(name)]

    def missing(self) -> list[str]:
        """Processes gone quiet. One never heard from counts only once the tracker itself has been
        up for a full heartbeat timeout: a restarted orchestrator must first give its peers the
        chance to be heard, or it would find every one of them missing at its first tick."""
        grace_over = time.monotonic() - self._started >= self._missing_after_s
        return [name for name in self.not_alive() if grace_over or self.components[name].last_seen is not None]

    def snapshot(self) -> dict[str, dict[str, object]]:
        out = {}
        for name, comp in self.components.items():
            age = self.age_s(name)
            out[name] = {
                "alive": self.alive(name),
                "pid": comp.pid,
                "heartbeat_age_s": None if age is None else round(age, 3),
                "restarts": comp.restarts,
                "fatal": comp.fatal,
                "trading_enabled": comp.trading_enabled,
                "stats": comp.stats,
            }
        return out
