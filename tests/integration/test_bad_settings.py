"""Bad settings: every program exits at once naming the field, and supervisord gives up (FATAL).

A process with unusable settings exits with EXIT_BAD_SETTINGS (78) before ``startsecs``; after
``startretries`` such starts supervisord marks it FATAL and stops trying. So a bad config ends in a
bounded time in a visible state, instead of a restart loop.

Each case runs one daemon (module-scoped, parametrized fixture) and two tests read its evidence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.settings import EXIT_BAD_SETTINGS
from services.tradectl import exit_codes

from .daemon import Daemon, WaitTimeout, wait_until

# supervisord decides "RUNNING" by the clock (startsecs): beside a test that loads both cores, its
# own loop and our processes' exits are late enough to be counted as runs (seen twice in 3 runs)
pytestmark = pytest.mark.alone

STARTRETRIES = 3  # the template's default, which the Daemon renders
# startretries backoffs of 1+2+3 s plus four start attempts of every program on 2 cores
FATAL_WITHIN_S = 30

CASES = {
    "env: heartbeat interval not a number": (
        {"environment": {"TRADING_BUS__HEARTBEAT_INTERVAL_S": "abc"}},
        ["bus.heartbeat_interval_s"],
    ),
    "toml: unknown key": (
        {"config": {"orchestrator": {"auto_opn": False}}},
        ["orchestrator.auto_opn", "Extra inputs are not permitted"],
    ),
    "toml: syntax error": (
        {"toml_extra": "\n[engine]\ndeadman_timeout_s = = 2\n"},
        ["invalid settings", "line"],
    ),
    "toml: a strategy on a symbol the venue does not trade": (
        {"config": {"venue_sim": {"symbols": {"BTC-USD": 40_000.0}}}},  # the demo market maker trades ETH-USD
        ["engine.strategies[mm].symbol='ETH-USD' is not traded by the venue simulator (venue_sim.symbols: BTC-USD)"],
    ),
}


@dataclass
class Outcome:
    programs: list[str]
    must_mention: list[str]
    fatal_after_s: float
    states_later: dict[str, str]
    supervisord_log: str
    supervisord_log_later: str
    program_logs: dict[str, str]
    tradectl_code: int
    tradectl_stderr: str


@pytest.fixture(scope="module", params=list(CASES))
def outcome(request: pytest.FixtureRequest) -> Iterator[Outcome]:
    options, must_mention = CASES[request.param]
    d = Daemon(**options)
    try:
        d.start(wait=False)
        t0 = time.monotonic()
        try:
            wait_until(lambda: set(d.statenames().values()) == {"FATAL"}, FATAL_WITHIN_S, interval=0.1,
                       ignore=(OSError,))
        except WaitTimeout:
            pass  # still restarting: the tests below say so, with the evidence
        fatal_after_s = time.monotonic() - t0
        sup_log = d.supervisord_log.read_text()
        time.sleep(1.5)  # FATAL must be final: nothing may be spawned after it
        res = d.tradectl("state", env=options.get("environment"))
        yield Outcome(
            programs=d.programs, must_mention=must_mention, fatal_after_s=fatal_after_s,
            states_later=d.statenames(), supervisord_log=sup_log,
            supervisord_log_later=d.supervisord_log.read_text(),
            program_logs={p: d.program_log(p).read_text(errors="replace") for p in d.programs},
            tradectl_code=res.returncode, tradectl_stderr=res.stderr,
        )
    finally:
        d.close()
    assert not d.leftovers_killed and not d.leftover_processes()


def test_bad_settings_end_fatal_and_name_the_field(outcome: Outcome) -> None:
    assert set(outcome.states_later.values()) == {"FATAL"}, (
        f"not every program FATAL {outcome.fatal_after_s:.0f}s after start: {outcome.states_later}")
    assert outcome.fatal_after_s < FATAL_WITHIN_S
    assert outcome.supervisord_log_later == outcome.supervisord_log, "something was spawned after FATAL"
    for program in outcome.programs:
        sup_log = outcome.supervisord_log
        assert f"exited: {program} (exit status {EXIT_BAD_SETTINGS}; not expected)" in sup_log, sup_log
        assert f"gave up: {program} entered FATAL state" in sup_log, sup_log
        log = outcome.program_logs[program]
        assert f"{program}: invalid settings: " in log, log
        for text in outcome.must_mention:
            assert text in log, (program, text, log)
        assert "Traceback" not in log, log
    # tradectl, with the same bad settings, says so with exit code 2
    assert outcome.tradectl_code == exit_codes.BAD_SETTINGS, outcome.tradectl_stderr
    assert "invalid settings" in outcome.tradectl_stderr


def test_a_failed_start_never_counts_as_running(outcome: Outcome) -> None:
    """supervisord gives up only after ``startretries`` *consecutive* failed starts. A start that
    outlives ``startsecs`` before exiting 78 is declared RUNNING, and its exit is then autorestarted
    with a fresh retry budget: under load a bad config restarts again and again. So every program
    must exit within startsecs every time: spawned exactly 1 + startretries times, never RUNNING."""
    overcounted = {}
    for program in outcome.programs:
        spawns = len(re.findall(rf"spawned: '{program}' with pid", outcome.supervisord_log))
        declared_running = len(re.findall(rf"success: {program} entered RUNNING state", outcome.supervisord_log))
        if spawns != STARTRETRIES + 1 or declared_running:
            overcounted[program] = {"spawns": spawns, "declared RUNNING": declared_running}
    assert not overcounted, (
        f"with startretries={STARTRETRIES}, programs exiting {EXIT_BAD_SETTINGS} were spawned more than "
        f"{STARTRETRIES + 1} times, because a failing start outlived startsecs and counted as RUNNING: "
        f"{overcounted}\n" + "\n".join(ln for ln in outcome.supervisord_log.splitlines() if "success:" in ln)
    )
