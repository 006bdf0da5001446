"""Each ``tradectl bus`` verb once, through the real CLI, against a running daemon."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from integration.daemon import Daemon, _tool, clean_environ

from bus import SERVICE_NAMES

MODULE_CONFIG: dict = {}


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _bus(d: Daemon, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    res = d.tradectl("bus", *args, timeout=timeout)
    assert res.returncode == 0, f"tradectl bus {' '.join(args)}: {res.returncode}\n{res.stderr}"
    return res


def test_topics_echo_hz_bw_gaps(module_daemon: Daemon) -> None:
    d = module_daemon
    topics = json.loads(_bus(d, "topics", "--window", "1.5", "--json").stdout)["topics"]
    seen = {(t["topic"], t["source"]): t for t in topics}
    for service in (*SERVICE_NAMES, "venue_sim"):
        hb = seen[(f"hb.{service}", service)]
        assert hb["types"] == ["heartbeat"] and hb["count"] >= 5 and 3 < hb["rate_hz"] < 20
    assert any(t.startswith("md.") for t, _ in seen)

    echo = _lines(_bus(d, "echo", "hb.orchestrator", "--json", "--count", "2", "--timeout", "10").stdout)
    assert [(e["topic"], e["source"], e["type"]) for e in echo] == [("hb.orchestrator", "orchestrator", "heartbeat")] * 2
    assert echo[1]["seq"] == echo[0]["seq"] + 1 and echo[0]["body"]["interval_s"] == 0.1

    hz = _lines(_bus(d, "hz", "hb.engine", "--window", "2", "--interval", "1.2", "--count", "2", "--json").stdout)
    last = [r for r in hz if r.get("topic") == "hb.engine"][-1]
    assert abs(last["rate_hz"] - 10.0) < 2.5, last  # a 0.1 s heartbeat timer

    bw = _lines(_bus(d, "bw", "hb.", "--window", "1", "--count", "1", "--json").stdout)
    assert {r["source"] for r in bw} >= set(SERVICE_NAMES) and all(r["bytes_per_s"] > 0 for r in bw)

    report = _lines(_bus(d, "gaps", "--once", "--interval", "1.5", "--json").stdout)[-1]
    for service in (*SERVICE_NAMES, "venue_sim"):
        p = report["publishers"][service]
        assert p["heard"] and p["stale"] is False and p["lost"] == 0, (service, p)


def test_calls_shows_a_status_call_with_its_round_trip(module_daemon: Daemon) -> None:
    d = module_daemon
    calls = subprocess.Popen([_tool("tradectl"), "bus", "calls", "orchestrator", "--json", "--timeout", "6"],
                             env=clean_environ({"TRADING_CONFIG": str(d.toml_path)}), cwd=d.root, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # calls go on until the sniffer ends (--timeout): those made before it had attached are not seen
    while calls.poll() is None:
        assert d.tradectl("status").returncode == 0
        time.sleep(0.3)
    out, err = calls.communicate(timeout=30)
    # a call whose request went out just before the sniffer attached shows its reply alone
    mine = [c for c in _lines(out) if c["command"] == "status" and c["caller"] == "tradectl"
            and c["server_ms"] is not None]
    assert mine, (out, err)
    c = mine[0]
    assert c["service"] == "orchestrator" and c["ok"] is True and not c["pending"]
    assert 0 <= c["server_ms"] <= c["rtt_ms"] < 2000


def test_record_info_and_play_refuses_a_live_endpoint(module_daemon: Daemon, tmp_path: Path) -> None:
    d = module_daemon
    rec = tmp_path / "live.tdbus"
    _bus(d, "record", str(rec), "hb.", "state", "--duration", "1.5", "--json")
    info = json.loads(_bus(d, "info", str(rec), "--json").stdout)
    assert info["messages"] > 20 and set(info["sources"]) >= set(SERVICE_NAMES)
    assert info["gaps"]["lost"] == 0 and info["parts"][0]["indexed"]
    res = d.tradectl("bus", "play", str(rec), "--wait", "0")
    assert res.returncode == 2 and "in use" in res.stderr  # never takes a running daemon's place
