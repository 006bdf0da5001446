"""services.backoff.Backoff and services.orchestrator.disk_watch.DiskWatch, on real directories."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from services.backoff import Backoff
from services.orchestrator.disk_watch import MIB, DiskWatch
from services.orchestrator.incident import KEEP_FIRST_STEPS, MAX_STEPS, IncidentReport, Step


def test_backoff_doubles_to_its_cap_and_starts_again_after_reset() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next() == 0.1


def test_backoff_jitter_stays_within_its_spread() -> None:
    backoff = Backoff(1.0, 1.0, jitter=0.2, rng=random.Random(7))
    delays = [backoff.next() for _ in range(200)]
    assert all(0.8 <= d <= 1.2 for d in delays) and len(set(delays)) > 100


def test_backoff_refuses_an_impossible_range() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_disk_watch_reports_low_space_and_missing_directories(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert DiskWatch({"state": tmp_path}, min_free_bytes=1).problems() == []
    (low,) = DiskWatch({"state": tmp_path}, min_free_bytes=free + 100 * MIB).problems()
    assert low.startswith(f"state directory {tmp_path} has ") and "orchestrator.min_free_disk_mb" in low
    (gone,) = DiskWatch({"log": tmp_path / "nope"}, min_free_bytes=1).problems()
    assert gone.startswith("log directory") and "No such file" in gone


def test_an_incident_report_keeps_its_first_and_latest_steps() -> None:
    report = IncidentReport("s", "t", 0.0)
    for i in range(MAX_STEPS + 30):
        report.add_step(Step(f"step {i}", False, 1.0, ""))
    assert len(report.steps) == MAX_STEPS and report.steps_omitted == 30
    assert report.steps[KEEP_FIRST_STEPS - 1].name == f"step {KEEP_FIRST_STEPS - 1}"
    assert report.steps[-1].name == f"step {MAX_STEPS + 29}"
    snapshot = report.snapshot()
    report.add_step(Step("later", True, 1.0, ""))
    assert snapshot.steps[-1].name == f"step {MAX_STEPS + 29}"
