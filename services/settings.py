"""The one settings model: defaults, then a TOML file, then environment variables.

Sources, lowest to highest precedence:
  1. the defaults below (the embedded default: simulated venue, synthetic feed, demo strategy);
  2. the TOML file named by ``TRADING_CONFIG`` (sections ``[bus]``, ``[orchestrator]``, ...);
  3. environment variables ``TRADING_<SECTION>__<FIELD>``, e.g.
     ``TRADING_ORCHESTRATOR__HEALTH_CHECK_INTERVAL_S=2``.
Unknown keys and wrong types are errors: a process with bad settings prints which field is wrong
and why, and exits with ``EXIT_BAD_SETTINGS``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bus.settings import BusSettings
from deploy.settings import SupervisionSettings
from services.console.settings import ConsoleSettings
from services.data_router.settings import DataRouterSettings
from services.engine.settings import EngineSettings
from services.exchange_manager.settings import ExchangeManagerSettings
from services.log_storm import LogStormSettings
from services.orchestrator.settings import OrchestratorSettings
from services.safety.settings import SafetySettings
from services.session_clock import ClockMode
from services.venue_sim.settings import VenueSimSettings
from services.venues.settings import CcxtConnectorSettings

ENV_PREFIX = "TRADING_"
ENV_NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "TRADING_CONFIG"
# EX_CONFIG from sysexits.h; supervisord treats an exit before startsecs as a failed start and gives
# up (FATAL) after startretries, so a bad config never restart-loops forever.
EXIT_BAD_SETTINGS = 78


class PathSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    # ipc sockets and supervisord's control socket (created with mode 0700).
    run_dir: Path = Path("run")
    # per-program logs, session logs (logs/live/), reports.
    log_dir: Path = Path("logs")
    # journals that must survive restarts.
    state_dir: Path = Path("run/state")
    # CURVE key pairs (bus/keys.py; mode 0700, secrets 0600); default: <state_dir>/keys.
    keys_dir: Path | None = None

    @field_validator("run_dir", "log_dir", "state_dir", "keys_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @property
    def keys(self) -> Path:
        return self.keys_dir or self.state_dir / "keys"


class SessionSettings(BaseModel):
    """What makes one trading session (section ``[session]``)."""

    model_config = ConfigDict(extra="forbid")

    # Which time the session's timers read (services/session_clock.py): "wall", the data's own
    # time ("data", for a replay), or "auto": the data's time when the venue simulator replays
    # recorded files, the wall clock otherwise.
    clock: Literal["auto", "wall", "data"] = "auto"
    # A graceful stop of the whole daemon (Ctrl-C of `make run`, `supervisorctl shutdown`, SIGTERM
    # to supervisord) ends the session: SHUTDOWN, end-of-day report, and the next start is a new
    # session. True keeps it open instead, so the next start resumes it (as after a kill -9 or a
    # restart of the orchestrator alone, which always resume).
    resume_after_stop: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
    )

    paths: PathSettings = PathSettings()
    session: SessionSettings = SessionSettings()
    bus: BusSettings = BusSettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    exchange_manager: ExchangeManagerSettings = ExchangeManagerSettings()
    engine: EngineSettings = EngineSettings()
    data_router: DataRouterSettings = DataRouterSettings()
    safety: SafetySettings = SafetySettings()
    venue_sim: VenueSimSettings = VenueSimSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    # How every log (each program's own and the session logs) aggregates a storm of one kind of
    # record (services/log_storm.py).
    logs: LogStormSettings = LogStormSettings()
    # The operators' web console (services/console/), its own process.
    console: ConsoleSettings = ConsoleSettings()

    def clock_mode(self) -> ClockMode:
        """The session clock's mode once "auto" is resolved."""
        if self.session.clock != "auto":
            return self.session.clock
        return "data" if self.venue_sim.source == "replay" else "wall"

    def ccxt_connector(self, name: str) -> CcxtConnectorSettings:
        """The exchange manager's ccxt connector ``name`` (the data router's ccxt feed reads its venue)."""
        for connector in self.exchange_manager.connectors:
            if connector.name == name and isinstance(connector, CcxtConnectorSettings):
                return connector
        raise ValueError(f"data_router.feed_connector={name!r} names no ccxt connector of exchange_manager.connectors")

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        """Limits that each look fine alone but cannot work together: refused at start, each named,
        rather than found out in the session (a dead-man that trips between two heartbeats, a
        strategy whose every order the gate refuses)."""
        problems = [*self._timing_problems(), *self._limit_problems(), *self._symbol_problems(),
                    *self._venue_problems()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _timing_problems(self) -> list[str]:
        beat = self.bus.heartbeat_interval_s
        missing = beat * self.bus.missed_heartbeats
        out = []
        for section in ("engine", "exchange_manager"):
            deadman = getattr(self, section).deadman_timeout_s
            if deadman <= 2 * beat:
                out.append(f"{section}.deadman_timeout_s={deadman:g} must exceed two heartbeats "
                           f"(2 x bus.heartbeat_interval_s={beat:g}): it would trip between the orchestrator's words")
        health = self.orchestrator.health
        if health.degraded_check_interval_s > self.orchestrator.health_check_interval_s:
            out.append(f"orchestrator.health.degraded_check_interval_s={health.degraded_check_interval_s:g} is above "
                       f"orchestrator.health_check_interval_s={self.orchestrator.health_check_interval_s:g}: a "
                       f"DEGRADED session would be watched less often than a healthy one")
        escalate = health.missing_escalate_after_s
        if escalate is not None and escalate <= missing:
            out.append(f"orchestrator.health.missing_escalate_after_s={escalate:g} must exceed the time a process "
                       f"takes to count as missing (bus.heartbeat_interval_s x bus.missed_heartbeats = {missing:g})")
        hung = self.supervision.hung_restart_after_s
        if hung is not None and hung <= missing:
            out.append(f"supervision.hung_restart_after_s={hung:g} must exceed the time a process takes to count as "
                       f"missing (bus.heartbeat_interval_s x bus.missed_heartbeats = {missing:g}): a process late by "
                       f"a few heartbeats would be killed")
        for c in self.exchange_manager.connectors:
            if c.heartbeat_timeout_s <= 2 * beat:
                out.append(f"exchange_manager.connectors[{c.name}].heartbeat_timeout_s={c.heartbeat_timeout_s:g} must "
                           f"exceed two venue heartbeats (2 x bus.heartbeat_interval_s={beat:g}): the venue would "
                           f"count as gone between two of them")
            if c.reconnect_max_s < c.reconnect_initial_s:
                out.append(f"exchange_manager.connectors[{c.name}].reconnect_max_s={c.reconnect_max_s:g} is below "
                           f"reconnect_initial_s={c.reconnect_initial_s:g}")
        return out

    def _limit_problems(self) -> list[str]:
        risk = self.exchange_manager.risk
        out = []
        # The data router's own subscriptions at the venue's PUB, and a few of its other sockets'.
        if self.data_router.max_symbols + 8 > self.bus.subscriptions_per_peer:
            out.append(f"data_router.max_symbols={self.data_router.max_symbols} (+8 other subscriptions) is above "
                       f"bus.subscriptions_per_peer={self.bus.subscriptions_per_peer}: the venue's PUB would cut "
                       f"the data router off")
        if len(self.data_router.symbols) > self.data_router.max_symbols:
            out.append(f"data_router.symbols lists {len(self.data_router.symbols)} symbols, above "
                       f"data_router.max_symbols={self.data_router.max_symbols}")
        if risk.max_order_qty > 2 * risk.max_position:
            out.append(f"exchange_manager.risk.max_order_qty={risk.max_order_qty:g} is above twice max_position="
                       f"{risk.max_position:g}: the largest order that can pass flips -max_position to +max_position")
        for strategy in self.engine.strategies:
            qty = getattr(strategy, "qty", None)
            own_max = getattr(strategy, "max_position", None)
            if qty is not None and own_max is not None and qty > own_max:
                out.append(f"engine.strategies[{strategy.name}].qty={qty:g} is above its max_position={own_max:g}: "
                           f"it could never place an order")
            if qty is not None and qty > risk.max_order_qty:
                out.append(f"engine.strategies[{strategy.name}].qty={qty:g} is above exchange_manager.risk.max_order_qty="
                           f"{risk.max_order_qty:g}: the gate would refuse every order it makes")
            offset = getattr(strategy, "offset_pct", None)
            if offset is not None and offset > risk.price_collar_pct:
                out.append(f"engine.strategies[{strategy.name}].offset_pct={offset:g} is outside exchange_manager.risk."
                           f"price_collar_pct={risk.price_collar_pct:g}: the gate would refuse every order it makes")
            if qty is not None and qty > risk.max_position:
                out.append(f"engine.strategies[{strategy.name}].qty={qty:g} is above exchange_manager.risk.max_position="
                           f"{risk.max_position:g}: no order of it could ever open a position")
        return out

    def _venue_problems(self) -> list[str]:
        out = []
        names = [c.name for c in self.exchange_manager.connectors]
        if len(set(names)) != len(names):
            out.append(f"exchange_manager.connectors: names must differ ({', '.join(names)})")
        if self.data_router.feed == "ccxt":
            try:
                self.ccxt_connector(self.data_router.feed_connector)
            except ValueError as exc:
                out.append(str(exc))
        return out

    def _symbol_problems(self) -> list[str]:
        """A strategy, or a symbol the data router routes, that the venue simulator does not trade:
        it would never get a quote (a replay of a symbol nobody trades is only a warning, in the
        venue's log: its market data still feeds the router and the safety detectors)."""
        where, listed = self.venue_sim.traded_symbols()
        out = []
        kinds = {c.name: c.kind for c in self.exchange_manager.connectors}
        for strategy in self.engine.strategies:
            symbol = getattr(strategy, "symbol", None)
            # where the strategy's orders go: the simulator's list is known here (a ccxt venue's is not)
            if symbol is not None and kinds.get(self.exchange_manager.connector_for(symbol)) == "venue_sim":
                if symbol not in listed:
                    out.append(f"engine.strategies[{strategy.name}].symbol={symbol!r} is not traded by the venue "
                               f"simulator ({where}: {', '.join(listed)}): the strategy would never get a quote")
        if self.data_router.feed_venue == "venue_sim":
            for symbol in self.data_router.symbols:
                if symbol not in listed:
                    out.append(f"data_router.symbols lists {symbol!r}, which the venue simulator does not trade "
                               f"({where}: {', '.join(listed)})")
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


class SettingsError(Exception):
    """Settings that cannot be used; ``str()`` names each wrong field and why, one per line."""


def _unknown_env_keys() -> list[str]:  # one line per unknown variable
    """``TRADING_*`` variables that name no section: pydantic-settings would ignore them, and a
    mistyped override silently ignored is a setting the operator believes is in force."""
    sections = set(Settings.model_fields)
    unknown = []
    for key in os.environ:
        if not key.upper().startswith(ENV_PREFIX) or key.upper() == CONFIG_FILE_ENV:
            continue
        rest = key[len(ENV_PREFIX):]
        section = rest.partition(ENV_NESTED_DELIMITER)[0]
        if section.lower() not in sections:
            unknown.append(f"{key}: unknown section {section.lower()!r}")
    return unknown


def writable_paths_problems(settings: Settings) -> list[str]:
    """The directories a service writes to that it cannot use, one line each (created if missing).
    Checked at start, so an unwritable log or state directory stops the process with its name
    instead of a traceback at the first write, or worse, a session that runs without its logs."""
    problems = []
    for field in ("run_dir", "log_dir", "state_dir"):
        path: Path = getattr(settings.paths, field)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(f"paths.{field}: cannot create {path}: {exc.strerror or exc}")
            continue
        try:  # try a real write: permission bits say nothing for root or a read-only mount
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            problems.append(f"paths.{field}: {path} is not writable: {exc.strerror or exc}")
    return problems


def load_settings() -> Settings:
    unknown = _unknown_env_keys()
    if unknown:
        raise SettingsError("\n".join(
            f"{line} (expected {ENV_PREFIX}<SECTION>{ENV_NESTED_DELIMITER}<FIELD>, "
            f"sections: {', '.join(Settings.model_fields)})" for line in sorted(unknown)))
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        raise SettingsError(f"{CONFIG_FILE_ENV}={config_file}: no such file")
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "(settings)"
            message = err["msg"].removeprefix("Value error, ")
            given = err.get("input")
            # A check across fields got a whole section as input: the message names the values.
            lines.append(f"{where}: {message}" if isinstance(given, (dict, list)) else f"{where}: {message} (got {given!r})")
        raise SettingsError("\n".join(lines)) from None
    except (ValueError, OSError) as exc:  # unreadable or malformed TOML, undecodable env JSON
        raise SettingsError(str(exc)) from None
