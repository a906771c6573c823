"""A parser and a small evaluator for udev rules files, for systems whose udevadm has no `verify`
(systemd < 253, e.g. Debian 12).

``parse()`` checks what `udevadm verify` checks for syntax: every line is comma-separated
``KEY[{attr}] OP "value"`` pairs, the key is known, the operator fits the key (a match key cannot be
assigned, an assign-only key cannot be matched), keys that need ``{attr}`` have it, and every GOTO has
its LABEL.  ``evaluate()`` runs the rules against a described device so tests can assert what a rule
*does* (e.g. that ATTRS keys on one line match the same ancestor), not only that it parses.

Usage: python3 udevrules.py FILE...   (exit 1 with file:line: message on any problem)
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
              "ATTRS", "TAGS", "TEST", "RESULT", "CONST"}
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS", "WAIT_FOR"}
BOTH = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG", "PROGRAM"}  # PROGRAM="x" runs x too
NEEDS_ATTR = {"ATTR", "ATTRS", "ENV", "SYSCTL", "CONST", "SECLABEL", "IMPORT"}
MAY_ATTR = NEEDS_ATTR | {"RUN", "TEST"}
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}

_PAIR = re.compile(r'\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*e?"((?:[^"\\]|\\.)*)"\s*(,?)')


class RulesError(Exception):
    pass


@dataclass
class Token:
    key: str
    attr: str | None
    op: str
    value: str


@dataclass
class Rule:
    line: int
    tokens: list[Token]


@dataclass
class Rules:
    path: str
    rules: list[Rule] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = n
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        out.append((start, buf))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


def parse(text: str, path: str = "<rules>") -> Rules:
    """Parse rules text; raise RulesError listing every problem as path:line: message."""
    problems: list[str] = []
    result = Rules(path)
    for n, line in _logical_lines(text):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        tokens: list[Token] = []
        pos = 0
        while pos < len(line):
            m = _PAIR.match(line, pos)
            if not m:
                problems.append(f"{path}:{n}: cannot parse at column {pos + 1}: {line[pos:].strip()[:40]!r}")
                break
            key, attr, op, value, sep = m.groups()
            tokens.append(Token(key, attr, op, value))
            pos = m.end()
            if not sep:
                if line[pos:].strip():
                    problems.append(f"{path}:{n}: text after the last pair: {line[pos:].strip()[:40]!r}")
                break
            if not line[pos:].strip():
                problems.append(f"{path}:{n}: trailing comma")
                break
        for t in tokens:
            where = f"{path}:{n}: {t.key}"
            if t.key not in MATCH_ONLY | ASSIGN_ONLY | BOTH:
                problems.append(f"{where}: unknown key")
                continue
            if t.key in MATCH_ONLY and t.op not in MATCH_OPS:
                problems.append(f"{where}: is a match key, {t.op!r} assigns (use ==)")
            if t.key in ASSIGN_ONLY and t.op not in ASSIGN_OPS:
                problems.append(f"{where}: can only be assigned, not matched with {t.op!r}")
            if t.key in NEEDS_ATTR and t.attr is None:
                problems.append(f"{where}: needs {{attribute}}")
            if t.attr is not None and t.key not in MAY_ATTR:
                problems.append(f"{where}: takes no {{attribute}}")
            if t.key == "MODE" and not re.fullmatch(r"0?[0-7]{3}", t.value):
                problems.append(f"{where}: {t.value!r} is not an octal mode")
            if t.key == "LABEL":
                result.labels[t.value] = n
        if tokens:
            result.rules.append(Rule(n, tokens))
    for rule in result.rules:
        for t in rule.tokens:
            if t.key == "GOTO" and t.value not in result.labels:
                problems.append(f"{path}:{rule.line}: GOTO {t.value!r} has no LABEL")
    if problems:
        raise RulesError("\n".join(problems))
    return result


def load(path: str | Path) -> Rules:
    return parse(Path(path).read_text(encoding="utf-8"), str(path))


# ------------------------------------------------------------------------------------------ evaluate

@dataclass
class Device:
    """One sysfs device; ``parent`` links make the devpath that ATTRS/SUBSYSTEMS search upwards."""
    subsystem: str
    kernel: str = ""
    devtype: str = ""
    driver: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    parent: Device | None = None

    def chain(self) -> list[Device]:
        out, d = [], self
        while d is not None:
            out.append(d)
            d = d.parent
        return out


@dataclass
class Outcome:
    env: dict[str, str]
    symlinks: list[str]
    mode: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)


def _glob(value: str, pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alt) for alt in pattern.split("|"))


def _usb_id(dev: Device, env: dict[str, str]) -> None:
    """What udev's usb_id builtin sets, for the properties the rules use."""
    for d in dev.chain():
        if d.subsystem == "usb" and d.devtype == "usb_interface":
            env.setdefault("ID_USB_INTERFACE_NUM", d.attrs.get("bInterfaceNumber", ""))
        if d.subsystem == "usb" and d.devtype == "usb_device":
            env.setdefault("ID_VENDOR_ID", d.attrs.get("idVendor", ""))
            env.setdefault("ID_MODEL_ID", d.attrs.get("idProduct", ""))
            env.setdefault("ID_BUS", "usb")
            break


def evaluate(rules: Rules, dev: Device, action: str = "add", env: dict[str, str] | None = None) -> Outcome:
    """Run the rules against ``dev``: matches, GOTO/LABEL, ENV/SYMLINK/MODE/GROUP/TAG assignments."""
    out = Outcome(env=dict(env or {}), symlinks=[])
    out.env.setdefault("DEVTYPE", dev.devtype)
    skip_to: str | None = None
    for rule in rules.rules:
        if skip_to is not None:
            if any(t.key == "LABEL" and t.value == skip_to for t in rule.tokens):
                skip_to = None
            continue
        self_ok = True
        parent_keys = [t for t in rule.tokens if t.key in ("ATTRS", "SUBSYSTEMS", "KERNELS", "DRIVERS")]
        for t in rule.tokens:
            if t.op not in MATCH_OPS:
                continue
            if t in parent_keys:
                continue
            actual = {"ACTION": action, "SUBSYSTEM": dev.subsystem, "KERNEL": dev.kernel,
                      "DRIVER": dev.driver}.get(t.key)
            if t.key == "ENV":
                actual = out.env.get(t.attr or "", "")
            elif t.key == "ATTR":
                actual = dev.attrs.get(t.attr or "", "")
            elif actual is None:
                actual = ""
            hit = _glob(actual, t.value)
            if hit != (t.op == "=="):
                self_ok = False
                break
        if self_ok and parent_keys:
            # all parent keys of one rule must match on the same device of the devpath
            def fits(d: Device, keys: list[Token] = parent_keys) -> bool:
                for t in keys:
                    actual = {"SUBSYSTEMS": d.subsystem, "KERNELS": d.kernel, "DRIVERS": d.driver,
                              "ATTRS": d.attrs.get(t.attr or "")}[t.key]
                    if actual is None or _glob(actual, t.value) != (t.op == "=="):
                        return False
                return True
            self_ok = any(fits(d) for d in dev.chain())
        if not self_ok:
            continue
        for t in rule.tokens:
            if t.op in MATCH_OPS:
                continue
            if t.key == "ENV":
                out.env[t.attr or ""] = t.value
            elif t.key == "SYMLINK":
                if t.op in ("=", ":="):
                    out.symlinks = []
                out.symlinks += t.value.split()
            elif t.key == "MODE":
                out.mode = t.value
            elif t.key == "GROUP":
                out.group = t.value
            elif t.key == "TAG":
                out.tags.append(t.value)
            elif t.key == "IMPORT" and t.attr == "builtin" and t.value.split()[0] == "usb_id":
                _usb_id(dev, out.env)
            elif t.key == "GOTO":
                skip_to = t.value
    return out


def main(argv: list[str]) -> int:
    bad = 0
    for p in argv:
        try:
            rules = load(p)
        except (RulesError, OSError) as exc:
            print(exc, file=sys.stderr)
            bad += 1
        else:
            print(f"{p}: {len(rules.rules)} rules ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
