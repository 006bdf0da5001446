"""tradectl's comfort, checked over every command click knows (so a new command cannot skip it):
help with an example, --json, completion, colours only on a terminal, and logs found on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from services.tradectl import exit_codes
from services.tradectl.cli import cli

TRADECTL = [sys.executable, "-c", "from services.tradectl.cli import main; main()"]
# Commands whose output is a script or a file, not data.
NO_JSON = {"completion", "bus record", "bus play"}


def leaf_commands(group: click.Group = cli, prefix: str = "") -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            out.update(leaf_commands(command, path + " "))
        else:
            out[path] = command
    return out


@pytest.mark.parametrize("path", sorted(leaf_commands()))
def test_every_command_has_help_with_an_example_and_json(path: str) -> None:
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"tradectl {path} --help shows no example"
    options = {opt for param in leaf_commands()[path].params for opt in getattr(param, "opts", [])}
    if path not in NO_JSON:
        assert "--json" in options, f"tradectl {path} has no --json"


def test_unreachable_daemon_says_what_to_do(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRADING_")},
           "TRADING_PATHS__RUN_DIR": str(tmp_path / "run"), "TRADING_BUS__COMMAND_TIMEOUT_S": "0.2",
           "TRADING_BUS__COMMAND_RETRIES": "0", "TRADING_PATHS__KEYS_DIR": os.environ["TRADING_PATHS__KEYS_DIR"]}
    res = subprocess.run([*TRADECTL, "state"], env=env, capture_output=True, text=True, timeout=30)
    assert res.returncode == exit_codes.UNREACHABLE == 3
    assert "not answering" in res.stderr and "make run" in res.stderr


def test_completion_scripts_and_completions(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        res = subprocess.run([*TRADECTL, "completion", shell], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and "_TRADECTL_COMPLETE" in res.stdout, (shell, res.stderr)
    env = {**os.environ, "_TRADECTL_COMPLETE": "bash_complete", "COMP_WORDS": "tradectl st", "COMP_CWORD": "1"}
    res = subprocess.run([*TRADECTL], env=env, capture_output=True, text=True, timeout=30)
    assert sorted(line.split(",", 1)[1] for line in res.stdout.split()) == ["state", "stats", "status"]


def _fake_log_dir(tmp_path: Path) -> Path:
    live = tmp_path / "logs" / "live"
    live.mkdir(parents=True)
    (live / "live_trading_20261125_100000.log").write_text("old session\n")
    os.utime(live / "live_trading_20261125_100000.log", (1, 1))
    (live / "live_trading_20261125_110000.log").write_text(
        "".join(f"2026-11-25 11:00:{i:02d},000 - LiveTradingOrchestrator - INFO - line {i}\n" for i in range(30)))
    (live / "events_20261125_110000.jsonl").write_text(json.dumps({"event": "state_transition"}) + "\n")
    (tmp_path / "logs" / "engine.log").write_text("engine ERROR one\nengine INFO two\n")
    return tmp_path / "logs"


def test_logs_lists_and_tails_without_a_daemon(tmp_path: Path) -> None:
    log_dir = _fake_log_dir(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRADING_")},
           "TRADING_PATHS__LOG_DIR": str(log_dir)}
    run = lambda *args: subprocess.run([*TRADECTL, "logs", *args], env=env, capture_output=True,  # noqa: E731
                                       text=True, timeout=30)
    listing = json.loads(run("--json").stdout)
    assert {row["name"] for row in listing} == {"live_trading", "events", "engine"}
    [live] = [row for row in listing if row["name"] == "live_trading"]
    assert live["path"].endswith("live_trading_20261125_110000.log")  # the newest session's
    tail = run("live_trading", "-n", "3").stdout.splitlines()
    assert [line.rsplit(" ", 1)[1] for line in tail] == ["27", "28", "29"]
    assert run("engine", "--grep", "ERROR").stdout == "engine ERROR one\n"
    assert json.loads(run("events", "--json").stdout) == {"event": "state_transition"}
    assert json.loads(run("engine", "-n", "1", "--json").stdout) == {"log": "engine", "line": "engine INFO two"}
    missing = run("nope")
    assert missing.returncode == 1 and "there are: engine, events, live_trading" in missing.stderr
    # Piped output has no colour codes; rich only colours a terminal.
    assert "\x1b[" not in run().stdout
