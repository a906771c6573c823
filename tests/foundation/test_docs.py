"""The README's commands are real: every `gateway ...` it shows parses, and the make targets exist."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from gateway.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


@pytest.mark.parametrize("target", sorted(set(re.findall(r"`make ([a-z-]+)`", README)) | {"run", "test"}))
def test_every_make_target_in_the_readme_exists(target: str) -> None:
    assert re.search(rf"^{re.escape(target)}:", MAKEFILE, re.M), f"Makefile has no target {target}"
    r = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def _readme_gateway_lines() -> list[str]:
    lines = []
    for block in re.findall(r"```\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            line = line.removeprefix(".venv/bin/")
            if line.startswith("gateway "):
                lines.append(line)
    return lines


def _expand(line: str) -> list[list[str]]:
    """`gateway failover lte|wired|auto` -> one argv per alternative, placeholders filled in."""
    line = line.replace("[--config PATH]", "--config x.toml").replace("[PATH]", "x.toml")
    line = re.sub(r"\[([^\]]*)\]", "", line)
    words = shlex.split(line.replace("/", " ").split(" ... ")[0])
    out: list[list[str]] = [[]]
    for w in words:
        if w in ("...", "NAME", "ID", "N"):
            w = {"NAME": "cam", "ID": "1", "N": "1"}.get(w, "")
            if not w:
                continue
        alts = w.split("|")
        out = [o + [a] for o in out for a in alts]
    return [o[1:] for o in out if len(o) > 1]


def test_every_gateway_command_in_the_readme_parses() -> None:
    parser = build_parser()
    seen = 0
    for line in _readme_gateway_lines():
        for argv in _expand(line):
            if argv[0] == "lab":
                continue  # the lab has its own tests
            if argv[0] in ("incidents", "report") and "gateway" in argv:
                argv = argv[: argv.index("gateway")]
            argv += {"add": ["ISP work", "--recurrence", "weekly tue 19:30-21:00"], "cancel": ["1"]}.get(argv[-1], []) \
                if argv[0] == "maintenance" else []
            parser.parse_args(argv)
            seen += 1
    assert seen >= 10
