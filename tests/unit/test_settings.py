"""services.settings: defaults, then the TOML file, then TRADING_* environment variables; every
wrong setting is a SettingsError naming the field, and a service with one exits with code 78."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from services.settings import EXIT_BAD_SETTINGS, Settings, SettingsError, load_settings, writable_paths_problems

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def write_toml(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trading.toml"
    path.write_text(text)
    monkeypatch.setenv("TRADING_CONFIG", str(path))
    return path


def settings_error(*fragments: str) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_defaults() -> None:
    s = load_settings()
    assert s.orchestrator.health_check_interval_s == 5.0
    assert s.orchestrator.failsafe_degradation_count == 3
    assert s.bus.transport == "ipc"
    assert s.bus.heartbeat_interval_s < 1.0  # "a fixed short interval (well under a second)"
    assert s.paths.run_dir.is_absolute() and s.paths.log_dir.is_absolute() and s.paths.state_dir.is_absolute()


def test_toml_file_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, """
[orchestrator]
health_check_interval_s = 2.5
failsafe_degradation_count = 5

[bus]
heartbeat_interval_s = 0.1
transport = "tcp"
""", monkeypatch)
    s = load_settings()
    assert s.orchestrator.health_check_interval_s == 2.5
    assert s.orchestrator.failsafe_degradation_count == 5
    assert s.bus.heartbeat_interval_s == 0.1 and s.bus.transport == "tcp"
    # untouched fields keep their defaults
    assert s.orchestrator.degradation_window_s == Settings().orchestrator.degradation_window_s
    assert s.bus.pub_hwm == Settings().bus.pub_hwm


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "[orchestrator]\nhealth_check_interval_s = 2.5\nfailsafe_degradation_count = 5\n",
               monkeypatch)
    monkeypatch.setenv("TRADING_ORCHESTRATOR__HEALTH_CHECK_INTERVAL_S", "7")
    s = load_settings()
    assert s.orchestrator.health_check_interval_s == 7.0  # env wins
    assert s.orchestrator.failsafe_degradation_count == 5  # toml still applies to the rest


def test_env_overrides_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADING_BUS__COMMAND_RETRIES", "4")
    monkeypatch.setenv("TRADING_PATHS__RUN_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("TRADING_ORCHESTRATOR__AUTO_OPEN", "false")
    s = load_settings()
    assert s.bus.command_retries == 4
    assert s.paths.run_dir == tmp_path / "r"
    assert s.orchestrator.auto_open is False


def test_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings(paths={"run_dir": "rel/run", "state_dir": "~/x"})
    assert s.paths.run_dir == tmp_path / "rel" / "run"
    assert s.paths.state_dir == Path("~/x").expanduser()


@pytest.mark.parametrize(
    "toml,fragments",
    [
        pytest.param("[orchestrator]\nbogus = 2.5\n", ["orchestrator.bogus"], id="unknown-field"),
        pytest.param("[orchestratr]\nhealth_check_interval_s = 2.5\n", ["orchestratr"], id="unknown-section"),
        pytest.param("top_level = 1\n", ["top_level"], id="unknown-top-level"),
        pytest.param("[orchestrator]\nfailsafe_degradation_count = \"three\"\n",
                     ["orchestrator.failsafe_degradation_count", "three"], id="wrong-type"),
        pytest.param("[orchestrator]\nfailsafe_degradation_count = 0\n",
                     ["orchestrator.failsafe_degradation_count"], id="out-of-range"),
        pytest.param("[bus]\ntransport = \"carrier-pigeon\"\n", ["bus.transport"], id="bad-literal"),
        pytest.param("[bus]\nheartbeat_interval_s = 60\n", ["bus.heartbeat_interval_s"], id="interval-too-long"),
        pytest.param("orchestrator = 5\n", ["orchestrator"], id="section-not-a-table"),
    ],
)
def test_bad_toml_settings_name_the_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str,
                                          fragments: list[str]) -> None:
    write_toml(tmp_path, toml, monkeypatch)
    settings_error(*fragments)


def test_several_bad_fields_are_all_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "[orchestrator]\nbogus = 1\nhealth_check_interval_s = \"x\"\n", monkeypatch)
    message = settings_error("orchestrator.bogus", "orchestrator.health_check_interval_s")
    assert len(message.splitlines()) == 2


def test_unparseable_toml_is_a_settings_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "this is [ not toml\n", monkeypatch)
    settings_error()


def test_missing_config_file_is_a_settings_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("TRADING_CONFIG", str(missing))
    settings_error("TRADING_CONFIG", str(missing))


@pytest.mark.parametrize(
    "var,value,fragments",
    [
        pytest.param("TRADING_ORCHESTRATOR__BOGUS", "1", ["orchestrator.bogus"], id="unknown-field"),
        pytest.param("TRADING_ORCHESTRATOR__HEALTH_CHECK_INTERVAL_S", "soon",
                     ["orchestrator.health_check_interval_s", "soon"], id="wrong-type-float"),
        pytest.param("TRADING_ORCHESTRATOR__FAILSAFE_DEGRADATION_COUNT", "2.5",
                     ["orchestrator.failsafe_degradation_count"], id="wrong-type-int"),
        pytest.param("TRADING_BUS__TRANSPORT", "udp", ["bus.transport"], id="bad-literal"),
        pytest.param("TRADING_ENGINE__DEADMAN_TIMEOUT_S", "-1", ["engine.deadman_timeout_s"], id="out-of-range"),
        pytest.param("TRADING_ORCHESTRATOR__AUTO_OPEN", "perhaps", ["orchestrator.auto_open"], id="bad-bool"),
    ],
)
def test_bad_env_settings_name_the_field(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                         fragments: list[str]) -> None:
    monkeypatch.setenv(var, value)
    settings_error(*fragments)


def test_bad_env_beats_good_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "[orchestrator]\nhealth_check_interval_s = 2.5\n", monkeypatch)
    monkeypatch.setenv("TRADING_ORCHESTRATOR__HEALTH_CHECK_INTERVAL_S", "x")
    settings_error("orchestrator.health_check_interval_s")


@pytest.mark.parametrize(
    "var",
    [
        pytest.param("TRADING_ORCHESTRATR__HEALTH_CHECK_INTERVAL_S", id="misspelt-section"),
        pytest.param("TRADING_ORCHESTRATOR_AUTO_OPEN", id="single-underscore-delimiter"),
        pytest.param("TRADING_BOGUS", id="unknown-top-level"),
    ],
)
def test_unknown_env_keys_are_errors(monkeypatch: pytest.MonkeyPatch, var: str) -> None:
    """A TRADING_* variable that names no setting is a mistake (a typo would otherwise be silently
    ignored, e.g. TRADING_ORCHESTRATR__AUTO_OPEN=false leaving auto_open on)."""
    monkeypatch.setenv(var, "1")
    settings_error(var.removeprefix("TRADING_").split("__")[0].lower())


def test_config_variable_itself_is_not_an_unknown_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "", monkeypatch)
    assert load_settings().orchestrator.failsafe_degradation_count == 3


def _run_service(env_overrides: dict[str, str], tmp_path: Path,
                 service: str = "engine") -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    # Should the settings unexpectedly load, the process must not touch the project's run dir.
    env.update({
        "TRADING_PATHS__RUN_DIR": str(tmp_path / "run"),
        "TRADING_PATHS__LOG_DIR": str(tmp_path / "logs"),
        "TRADING_PATHS__STATE_DIR": str(tmp_path / "state"),
        **env_overrides,
    })
    # What it costs is the child's CPU time: the wall time is the host's (three test workers on 2
    # cores stretched a 0.4 s start to 9 s); one that hangs instead of exiting hits the timeout.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", f"services.{service}"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=15)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_service_with_bad_env_setting_exits_78_naming_the_field(tmp_path: Path) -> None:
    proc, cpu_s = _run_service({"TRADING_ENGINE__DEADMAN_TIMEOUT_S": "not-a-number"}, tmp_path)
    assert proc.returncode == EXIT_BAD_SETTINGS == 78, proc.stderr
    assert "engine.deadman_timeout_s" in proc.stderr
    assert "not-a-number" in proc.stderr
    assert cpu_s < 5.0
    assert not (tmp_path / "run").exists()  # it gave up before binding anything


def test_service_with_missing_config_file_exits_78(tmp_path: Path) -> None:
    proc, cpu_s = _run_service({"TRADING_CONFIG": str(tmp_path / "missing.toml")}, tmp_path)
    assert proc.returncode == EXIT_BAD_SETTINGS, proc.stderr
    assert "TRADING_CONFIG" in proc.stderr and "missing.toml" in proc.stderr
    assert cpu_s < 5.0


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ("[engine]\ndeadman_timeout_s = 0.4\n", ("engine.deadman_timeout_s=0.4", "two heartbeats")),
        ("[bus]\nheartbeat_interval_s = 1.0\n", ("exchange_manager.deadman_timeout_s=2", "two heartbeats")),
        ("[orchestrator.health]\nmissing_escalate_after_s = 0.5\n", ("missing_escalate_after_s=0.5", "missing")),
        ("[[exchange_manager.connectors]]\nname = \"sim\"\nreconnect_initial_s = 2\nreconnect_max_s = 1\n",
         ("connectors[sim].reconnect_max_s=1", "reconnect_initial_s=2")),
        ("[exchange_manager.risk]\nmax_order_qty = 0.05\n",
         ("engine.strategies[mm].qty=0.1", "max_order_qty=0.05", "refuse every order")),
        ("[orchestrator.schedule]\nalways_open = false\nopen = 16:00:00\nclose = 16:00:00\n",
         ("orchestrator.schedule", "equals close", "never open")),
        ("[orchestrator.schedule]\ncalendar = \"XNYS\"\nopen = 10:00:00\nholidays = [2026-12-24]\n",
         ("orchestrator.schedule", "calendar='XNYS' gives the hours: drop holidays, open")),
        ("[orchestrator.schedule]\ncalendar = \"XNYS\"\nalways_open = true\n",
         ("orchestrator.schedule", "contradict")),
        ("[orchestrator.schedule]\nholidays = [2026-12-24]\n", ("orchestrator.schedule", "always_open = false")),
        ("[orchestrator.schedule]\nweekdays = [0, 7]\n", ("orchestrator.schedule.weekdays", "0 (Monday) .. 6")),
        ("[data_router]\nmax_symbols = 995\n", ("data_router.max_symbols=995", "bus.subscriptions_per_peer=1000",
                                                 "cut the data router off")),
        ("[data_router]\nsymbols = [\"A\", \"B\"]\nmax_symbols = 1\n", ("data_router.symbols lists 2 symbols",)),
        ("[bus]\nsubscriptions_per_peer = 5000\n", ("subscriptions_per_peer=5000", "subscriptions_per_socket=2000")),
    ],
)
def test_limits_that_cannot_work_together_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str,
                                                      fragments: tuple[str, ...]) -> None:
    write_toml(tmp_path, toml, monkeypatch)
    message = settings_error(*fragments)
    assert len(message.splitlines()) == 1, message
    assert "{" not in message, message  # names the values, never dumps a whole section


def test_schedule_open_after_close_is_an_overnight_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_toml(tmp_path, "[orchestrator.schedule]\nalways_open = false\nopen = 17:00:00\nclose = 16:00:00\n"
                         "holidays = [2026-12-24]\n", monkeypatch)
    schedule = load_settings().orchestrator.schedule
    assert schedule.open > schedule.close and [str(d) for d in schedule.holidays] == ["2026-12-24"]
    write_toml(tmp_path, "[orchestrator.schedule]\ncalendar = \"XNYS\"\nalways_open = false\n", monkeypatch)
    assert load_settings().orchestrator.schedule.calendar == "XNYS"


def test_orchestrator_with_an_unknown_calendar_exits_78_naming_it(tmp_path: Path) -> None:
    """Every process loads the settings, but only the orchestrator loads the calendars (pandas):
    it checks the code at start."""
    proc, cpu_s = _run_service({"TRADING_ORCHESTRATOR__SCHEDULE__CALENDAR": "XNYZ"}, tmp_path, "orchestrator")
    assert proc.returncode == EXIT_BAD_SETTINGS, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("orchestrator: invalid settings: orchestrator.schedule.calendar='XNYZ' is not an "
                           "exchange_calendars calendar"), line
    assert cpu_s < 10.0
    # it gave up before binding anything (or taking its lock): the directories checked stay empty
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("field", ["run_dir", "log_dir", "state_dir"])
def test_a_directory_that_cannot_be_written_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     field: str) -> None:
    monkeypatch.chdir(tmp_path)  # the other two directories default to ./run and ./logs
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(f"TRADING_PATHS__{field.upper()}", str(blocker / "sub"))
    problems = writable_paths_problems(load_settings())
    assert problems == [f"paths.{field}: cannot create {blocker / 'sub'}: Not a directory"]
    if not Path("/sys/kernel").is_dir():
        return
    monkeypatch.setenv(f"TRADING_PATHS__{field.upper()}", "/sys/kernel")  # exists, read-only even for root
    [problem] = writable_paths_problems(load_settings())
    assert problem.startswith(f"paths.{field}: /sys/kernel is not writable")
