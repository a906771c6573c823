"""hw/PANEL.md's tables say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.core import panel as core
from gateway.core.base import Event
from gateway.core.signals import ActiveUplinkChanged, IncidentStatus, PowerStatus, UplinkStatus

DOC = Path(__file__).resolve().parents[2] / "hw/PANEL.md"
WELL: list[Event] = [PowerStatus("online"), UplinkStatus("wired", "primary", "up", True),
                     UplinkStatus("lte", "backup", "standby", False)]
SITUATIONS: dict[str, list[Event]] = {
    "all well": WELL,
    "on battery": WELL + [PowerStatus("on_battery")],
    "low battery": WELL + [PowerStatus("low_battery")],
    "shutdown near": WELL + [PowerStatus("shutting_down")],
    "UPS not answering": WELL + [PowerStatus("comm_lost")],
    "on LTE": WELL + [UplinkStatus("wired", "primary", "down", False), UplinkStatus("lte", "backup", "up", True)],
    "no uplink works": WELL + [UplinkStatus("wired", "primary", "down", False),
                               UplinkStatus("lte", "backup", "down", False), ActiveUplinkChanged(None, "wired", "")],
    "incident (high)": WELL + [IncidentStatus(1, True, "high")],
    "incident (critical)": WELL + [IncidentStatus(1, True, "critical")],
    "button held long enough": WELL + [core.ButtonEdge(True, 0.0)],
    "nothing known yet (just started)": [],
}


def rows(header: str) -> list[list[str]]:
    text = DOC.read_text()
    block = text[text.index(header):]
    out = []
    for line in block.splitlines()[1:]:
        if not line.startswith("|"):
            if out:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ("situation", "pattern", "---"):
            out.append(cells)
    return out


def test_pattern_table_matches_the_code() -> None:
    table = rows("| situation |")
    assert [r[0] for r in table] == list(SITUATIONS)
    for situation, power, network, alert, buzzer in table:
        s = core.initial()
        for ev in SITUATIONS[situation]:
            s, _ = core.step(s, ev, 0.0)
        o = core.outputs(s, 10.0)
        a = o.led("alert")
        got = (o.led("power").pattern, o.led("network").pattern, f"{a.color}, {a.pattern}", o.buzzer)
        want = tuple(x.replace(" blink", "_blink") for x in (power, network, alert)) + (buzzer,)
        assert got == want, situation


def test_buzzer_table_names_every_pattern() -> None:
    names = {r[0] for r in rows("| pattern | sound |")}
    assert names == set(core.BUZZER_PATTERNS) - {"off"}


def test_timings_in_the_text_match() -> None:
    text = DOC.read_text()
    assert core.LED_PATTERNS["slow_blink"] == (1.0, 1.0) and "slow blink 1 s on / 1 s off" in text
    assert core.LED_PATTERNS["fast_blink"] == (0.2, 0.2) and "fast blink 0.2 s / 0.2 s" in text
    assert re.search(r"under 30 ms", text) and core.Policy().debounce_s == 0.03
