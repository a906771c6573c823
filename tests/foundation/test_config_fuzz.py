"""Fuzzing the config loader: any text gives a Config or a ConfigError naming file:line: key — nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import config
from gateway.core.errors import ConfigError

EXAMPLE = (Path(config.__file__).parent / "example.toml").read_text()
PROBLEM = re.compile(r"^cfg\.toml:\d+: \S.*: .+", re.S)

# values of every TOML type, including ones no key expects
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) |
    st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _toml_value(v: Any) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode() + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _check(text: str) -> None:
    try:
        cfg = config.parse(text, "cfg.toml")
    except ConfigError as exc:
        assert exc.problems, "a ConfigError must list its problems"
        for p in exc.problems:
            assert PROBLEM.match(p), p
        return
    assert cfg.site.name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_is_a_config_or_a_located_error(text: str) -> None:
    _check(text)


LINES = EXAMPLE.splitlines()
ASSIGNMENTS = [i for i, ln in enumerate(LINES) if re.match(r"^[a-z_]+ *=", ln)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ASSIGNMENTS), VALUES)
def test_any_value_for_any_key_of_the_example(index: int, value: Any) -> None:
    key = LINES[index].split("=", 1)[0].strip()
    lines = list(LINES)
    lines[index] = f"{key} = {_toml_value(value)}"
    text = "\n".join(lines)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pass  # still must come back as a located ConfigError
    _check(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.sampled_from(range(len(LINES))), max_size=8))
def test_dropping_lines_of_the_example(drop: set[int]) -> None:
    _check("\n".join(ln for i, ln in enumerate(LINES) if i not in drop))


def test_a_wrong_value_names_its_own_line() -> None:
    index = next(i for i in ASSIGNMENTS if LINES[i].startswith("poll_interval_s"))
    lines = list(LINES)
    lines[index] = 'poll_interval_s = "fast"'
    try:
        config.parse("\n".join(lines), "cfg.toml")
    except ConfigError as exc:
        assert any(p.startswith(f"cfg.toml:{index + 1}: ups.poll_interval_s:") for p in exc.problems), exc.problems
    else:
        raise AssertionError("a string poll interval was accepted")
