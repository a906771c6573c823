"""Config validation: every kind of problem names the file, the line and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.core.errors import ConfigError

EXAMPLE = Path(config.__file__).with_name("example.toml")

BASE = """\
[site]
name = "Test"

[ups]
host = "127.0.0.1"

[[switches]]
name = "core"
host = "127.0.0.2"

[[loads]]
name = "cam"
switch = "core"
port = 3
tier = 1

[[uplinks]]
name = "wired"
interface = "eth1"
role = "primary"
probe_targets = ["192.0.2.1", "192.0.2.2"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config.parse(text, "t.toml")
    return exc.value.problems


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_example_config_is_valid() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.site.name == "Example Office"
    assert [ld.tier for ld in cfg.loads] == [0, 1, 1, 2]
    assert cfg.uplink("primary").name == "wired"
    assert cfg.uplink("backup").name == "lte"
    assert cfg.failover.lte.data_budget_mb == 10000.0


def test_minimal_config_gets_defaults() -> None:
    cfg = config.parse(BASE, "t.toml")
    assert cfg.ups.port == 3493
    assert cfg.power.debounce_s == 2.0
    assert cfg.failover.failback_hold_s == 60.0
    assert cfg.web.listen == "0.0.0.0:8080"


def test_journal_retention_takes_fractions_of_a_day_and_an_interval() -> None:
    cfg = config.parse(BASE + "\n[journal]\nretention_days = 0.0025\nretention_interval_s = 2.5\nmax_mb = 0.5\n",
                       "t.toml")
    assert (cfg.journal.retention_days, cfg.journal.retention_interval_s, cfg.journal.max_mb) == (0.0025, 2.5, 0.5)
    assert config.parse(BASE, "t.toml").journal.retention_interval_s == 3600.0
    text = BASE + "\n[journal]\nretention_days = 0\nretention_interval_s = 0.1\n"
    found = problems(text)
    assert any(p.startswith(f"t.toml:{line_of(text, 'retention_days')}: journal.retention_days: 0.0 is out of range")
               for p in found), found
    assert any("journal.retention_interval_s: 0.1 is out of range" in p for p in found), found


def test_unknown_key_names_line_and_key() -> None:
    text = BASE.replace('host = "127.0.0.2"', 'host = "127.0.0.2"\ncommunty = "x"')
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{line_of(text, 'communty')}: switches[0].communty: unknown key")


def test_wrong_type() -> None:
    text = BASE.replace("port = 3", 'port = "three"')
    (p,) = problems(text)
    assert re.match(rf"t\.toml:{line_of(text, 'three')}: loads\[0\]\.port: expected integer", p)


def test_out_of_range() -> None:
    text = BASE.replace("tier = 1", "tier = 12")
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{line_of(text, 'tier = 12')}: loads[0].tier: 12 is out of range")


def test_bad_choice() -> None:
    text = BASE.replace('role = "primary"', 'role = "main"')
    assert any("uplinks[0].role: 'main' is not one of primary, backup" in p for p in problems(text))


def test_load_on_unknown_switch() -> None:
    text = BASE.replace('switch = "core"', 'switch = "edge"')
    (p,) = problems(text)
    n = line_of(text, 'switch = "edge"')
    assert p == f"t.toml:{n}: loads[0].switch: no switch named 'edge' (have: core)"


def test_two_loads_on_one_port() -> None:
    text = BASE + '\n[[loads]]\nname = "signage"\nswitch = "core"\nport = 3\ntier = 2\n'
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{len(text.splitlines()) - 1}: loads[1].port: port 3 on 'core' is already used")


def test_duplicate_names() -> None:
    text = BASE + '\n[[loads]]\nname = "cam"\nswitch = "core"\nport = 4\ntier = 2\n'
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{len(text.splitlines()) - 3}: loads[1].name: duplicate name 'cam'")


def test_missing_required_section() -> None:
    text = BASE.replace('[ups]\nhost = "127.0.0.1"\n', "")
    (p,) = problems(text)
    assert p == "t.toml:1: ups: missing required section"


def test_missing_required_key_points_at_its_table() -> None:
    text = BASE.replace('interface = "eth1"\n', "")
    (p,) = problems(text)
    assert p == f"t.toml:{line_of(text, '[[uplinks]]')}: uplinks[0].interface: missing required key"


def test_several_problems_are_all_reported_in_line_order() -> None:
    text = BASE.replace("tier = 1", "tier = -1").replace('name = "Test"', 'name = "Test"\ncolour = 1')
    ps = problems(text)
    assert len(ps) == 2
    assert [int(p.split(":")[1]) for p in ps] == sorted(int(p.split(":")[1]) for p in ps)


def test_broken_toml_gives_parser_line_and_column() -> None:
    text = BASE.replace('[[switches]]', '[[switches]')
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{line_of(text, '[[switches]')}: toml: ")
    assert "column" in p


def test_broken_toml_at_the_end_names_the_last_line() -> None:
    text = BASE.rstrip("\n") + '\n[journal]\nretention_days = '
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{len(text.splitlines())}: toml: ") and "end of document" in p


def test_nested_array_tables_are_located() -> None:
    text = BASE + '\n[[notify.targets]]\nname = "duty"\nurl = "json://127.0.0.1:9/"\n\n' \
                  '[[notify.escalation]]\nname = "l1"\ntargets = ["nobody"]\n'
    (p,) = problems(text)
    assert p.startswith(f"t.toml:{line_of(text, 'nobody')}: notify.escalation[0].targets: no notify target")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load(tmp_path / "absent.toml")
    assert exc.value.problems[0].startswith(f"{tmp_path / 'absent.toml'}:1: <file>: cannot read")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzzed_text_never_crashes(text: str) -> None:
    try:
        config.parse(text, "f.toml")
    except ConfigError as exc:
        assert all(re.match(r"f\.toml:\d+: ", p) for p in exc.problems)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["port", "tier", "name", "switch", "bogus"]),
                       st.one_of(st.integers(-5, 5000), st.text(max_size=5), st.booleans(), st.floats(allow_nan=False)),
                       max_size=5))
def test_fuzzed_load_tables_never_crash(values: dict[str, object]) -> None:
    import json
    body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
    try:
        config.parse(BASE + "\n[[loads]]\n" + body, "f.toml")
    except ConfigError as exc:
        assert all(re.match(r"f\.toml:\d+: ", p) for p in exc.problems)
