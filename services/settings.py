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
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bus.settings import BusSettings
from services.data_router.settings import DataRouterSettings
from services.engine.settings import EngineSettings
from services.exchange_manager.settings import ExchangeManagerSettings
from services.orchestrator.settings import OrchestratorSettings
from services.safety.settings import SafetySettings
from services.venue_sim.settings import VenueSimSettings

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

    @field_validator("run_dir", "log_dir", "state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
    )

    paths: PathSettings = PathSettings()
    bus: BusSettings = BusSettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    exchange_manager: ExchangeManagerSettings = ExchangeManagerSettings()
    engine: EngineSettings = EngineSettings()
    data_router: DataRouterSettings = DataRouterSettings()
    safety: SafetySettings = SafetySettings()
    venue_sim: VenueSimSettings = VenueSimSettings()

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
            lines.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("\n".join(lines)) from None
    except (ValueError, OSError) as exc:  # unreadable or malformed TOML, undecodable env JSON
        raise SettingsError(str(exc)) from None
