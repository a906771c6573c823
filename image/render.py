#!/usr/bin/env python3
"""Render the appliance's configuration: /etc/office-gateway/gateway.toml and NUT's files.

Standard library only, so it runs before (and independently of) the gateway package; it calls the
installed `gateway` command for the two things the package owns: hashing the admin password
(`gateway passwd`) and validating the config (`gateway check-config`).

    render.py firstboot [--root DIR] [--seed PATH] [--gateway CMD]   # what first boot runs
    render.py nut --config gateway.toml --out DIR [--set key=value]   # NUT files only (tests, labs)

The seed (/boot/firmware/office-gateway.toml) is a gateway.toml that an admin writes on any PC, with
two conveniences: ``[web] admin_password`` in clear (hashed here, then scrubbed from the boot
partition), and optional seed-only tables ``[nut]`` (driver, port, desc, extra driver options) and
``[system]`` (hostname).  The UPS account passwords are generated; nobody needs to type them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_TEMPLATES = HERE.parent / "hw" / "nut"
IMAGE_TEMPLATES = Path("/usr/local/share/office-gateway/nut")
SEED = "boot/firmware/office-gateway.toml"
CONFIG = "etc/office-gateway/gateway.toml"
NUT_DIR = "etc/nut"
STATE_DIR = "/var/lib/office-gateway"  # the unit's StateDirectory=; the sandbox allows no other
NUT_FILES = ("nut.conf", "ups.conf", "upsd.conf", "upsd.users", "upsmon.conf")

NUT_DEFAULTS: dict[str, Any] = {
    "mode": "standalone",
    "ups_name": "ups",
    "driver": "usbhid-ups",
    "port": "auto",
    "desc": "Office UPS",
    "listen_host": "127.0.0.1",
    "listen_port": 3493,
    "maxage_s": 15,
    "gateway_user": "gateway",
    "upsmon_user": "upsmon",
    "shutdown_cmd": "/sbin/shutdown -h +0",
    "final_delay_s": 5,
    "powerdown_flag": "/etc/killpower",
}
_SAFE = re.compile(r"[^\"\n\r\\]*")
_OPTION_KEY = re.compile(r"[a-z][a-z0-9_.]*")


class RenderError(Exception):
    pass


# ------------------------------------------------------------------------------------------ TOML out

def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise RenderError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Write a dict as TOML: scalars first, then tables, then arrays of tables (round-trips tomllib)."""
    lines: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict) and not _is_table_array(v):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in data.items():
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, dict):
            lines.append(f"\n[{name}]")
            body = dumps_toml(v, name)
            if body:
                lines.append(body)
        elif _is_table_array(v):
            for item in v:
                lines.append(f"\n[[{name}]]")
                body = dumps_toml(item, name)
                if body:
                    lines.append(body)
    return "\n".join(lines).lstrip("\n")


# ------------------------------------------------------------------------------------------ NUT

def nut_values(nut: dict[str, Any], ups: dict[str, Any], secrets_: dict[str, str]) -> dict[str, Any]:
    """Template values: defaults, then the daemon's [ups] account, then explicit [nut] keys; keys that
    are not template values are driver options for ups.conf (vendorid, productid, serial, ...)."""
    values = dict(NUT_DEFAULTS)
    known = set(NUT_DEFAULTS)
    options = {k: v for k, v in nut.items() if k not in known}
    values["ups_name"] = ups.get("name", values["ups_name"])
    values["listen_port"] = ups.get("port", values["listen_port"])
    values["gateway_user"] = ups.get("username") or values["gateway_user"]
    values.update({k: v for k, v in nut.items() if k in known})
    values.update(secrets_)
    for k, v in values.items():
        if not _SAFE.fullmatch(str(v)):
            raise RenderError(f"nut.{k}: quotes, backslashes and newlines are not allowed: {v!r}")
    lines = []
    for k, v in options.items():
        if not _OPTION_KEY.fullmatch(k) or not _SAFE.fullmatch(str(v)):
            raise RenderError(f"nut.{k}: not a usable driver option ({k} = {v!r})")
        text = str(v).lower() if isinstance(v, bool) else str(v)
        lines.append(f"\t{k} = \"{text}\"" if (not text or " " in text) else f"\t{k} = {text}")
    values["driver_options"] = "\n".join(lines)
    return values


def render_nut(values: dict[str, Any], templates: Path) -> dict[str, str]:
    out = {}
    for name in NUT_FILES:
        text = (templates / name).read_text(encoding="utf-8")
        try:
            out[name] = text.format_map(values)
        except KeyError as exc:
            raise RenderError(f"{templates / name}: no value for {{{exc.args[0]}}}") from None
    return out


# ------------------------------------------------------------------------------------------ files

def _gid(root: Path, group: str) -> int | None:
    """The group's id in the target system's /etc/group (the image's, not the build host's)."""
    path = root / "etc/group"
    if root == Path("/"):
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None
    if path.exists():
        for line in path.read_text().splitlines():
            f = line.split(":")
            if len(f) >= 3 and f[0] == group:
                return int(f[2])
    return None


def write_file(path: Path, text: str, mode: int, root: Path, group: str | None = None) -> None:
    """Write atomically with mode and root:group ownership (group looked up inside root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if os.geteuid() == 0:
            gid = _gid(root, group) if group else 0
            if gid is None:
                raise RenderError(f"group {group!r} does not exist in {root / 'etc/group'}")
            os.chown(tmp, 0, gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_nut(files: dict[str, str], outdir: Path, root: Path) -> None:
    for name, text in files.items():
        write_file(outdir / name, text, 0o640, root, "nut")


# ------------------------------------------------------------------------------------------ first boot

def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)


def build_config(seed: dict[str, Any], gateway: list[str], ups_password: str) -> dict[str, Any]:
    """The seed minus the seed-only parts, with the password hashed and the UPS account filled in."""
    nut = seed.get("nut", {})
    cfg = {k: v for k, v in seed.items() if k not in ("nut", "system")}
    site = cfg.setdefault("site", {})
    if site.get("state_dir", STATE_DIR) != STATE_DIR:
        raise RenderError(f"site.state_dir: must be {STATE_DIR} on the appliance (the unit's StateDirectory)")
    web = cfg.setdefault("web", {})
    clear = web.pop("admin_password", None)
    if clear is not None:
        res = _run([*gateway, "passwd"], stdin=f"{clear}\n")
        if res.returncode != 0:
            raise RenderError(f"web.admin_password: {res.stderr.strip() or 'gateway passwd failed'}")
        web["admin_password_hash"] = res.stdout.strip()
    if not web.get("admin_password_hash"):
        raise RenderError("web.admin_password: set an admin password for the status page")
    port = str(web.get("listen", "0.0.0.0:8080")).rpartition(":")[2]
    if port.isdigit() and int(port) < 1024:
        raise RenderError(f"web.listen: port {port} < 1024 needs CAP_NET_BIND_SERVICE, which the unit does not grant")
    ups = cfg.setdefault("ups", {})
    for key, nut_key in (("name", "ups_name"), ("port", "listen_port"), ("username", "gateway_user")):
        if key in ups and nut_key in nut and ups[key] != nut[nut_key]:
            raise RenderError(f"ups.{key} = {ups[key]!r} and nut.{nut_key} = {nut[nut_key]!r} disagree")
        ups.setdefault(key, nut.get(nut_key, NUT_DEFAULTS[nut_key]))
    if ups.setdefault("host", "127.0.0.1") not in ("127.0.0.1", "localhost", "::1"):
        raise RenderError(f"ups.host: {ups['host']!r}: the appliance's upsd listens on loopback only")
    ups["password"] = ups_password
    return cfg


def check_config(gateway: list[str], path: Path) -> None:
    res = _run([*gateway, "check-config", str(path)])
    if res.returncode != 0:
        raise RenderError((res.stderr or res.stdout).strip() or f"gateway check-config exited {res.returncode}")


def scrub_seed(text: str) -> str:
    """The seed as applied, with the clear admin password removed (it sits on a FAT partition)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return re.sub(r"(?m)^(\s*)admin_password\s*=.*$",
                  rf"\1# admin_password: applied {stamp}; the hash is in /{CONFIG}", text)


def firstboot(root: Path, seed_path: Path, gateway: list[str], templates: Path) -> None:
    text = seed_path.read_text(encoding="utf-8")
    try:
        seed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RenderError(f"{seed_path}: {exc}") from None
    secrets_ = {"gateway_password": secrets.token_urlsafe(24), "upsmon_password": secrets.token_urlsafe(24)}
    cfg = build_config(seed, gateway, secrets_["gateway_password"])
    nut_files = render_nut(nut_values(seed.get("nut", {}), cfg["ups"], secrets_), templates)

    target = root / CONFIG
    target.parent.mkdir(parents=True, exist_ok=True)
    # validate a candidate beside the target, then move it into place: never a half-written config
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".gateway.", suffix=".toml")
    os.close(fd)
    try:
        Path(tmp).write_text("# Rendered from the boot partition's office-gateway.toml by office-gateway-firstboot.\n"
                             + dumps_toml(cfg) + "\n", encoding="utf-8")
        try:
            check_config(gateway, Path(tmp))
        except RenderError as exc:  # name the file the admin knows, not the candidate's temp name
            raise RenderError(str(exc).replace(tmp, f"/{CONFIG} (rendered from the seed)")) from None
        write_file(target, Path(tmp).read_text(encoding="utf-8"), 0o640, root, "office-gateway")
    finally:
        Path(tmp).unlink(missing_ok=True)
    write_nut(nut_files, root / NUT_DIR, root)

    hostname = seed.get("system", {}).get("hostname")
    if hostname:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", hostname):
            raise RenderError(f"system.hostname: {hostname!r} is not a valid host name")
        write_file(root / "etc/hostname", hostname + "\n", 0o644, root)
        hosts = root / "etc/hosts"
        lines = [ln for ln in (hosts.read_text().splitlines() if hosts.exists() else [])
                 if not ln.startswith("127.0.1.1")]
        write_file(hosts, "\n".join([*lines, f"127.0.1.1\t{hostname}"]) + "\n", 0o644, root)

    applied = seed_path.with_name(seed_path.name + ".applied")
    applied.write_text(scrub_seed(text), encoding="utf-8")
    seed_path.unlink()
    seed_path.with_name("office-gateway.errors.txt").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="render.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("firstboot", help="render /etc from the boot partition's seed")
    f.add_argument("--root", default="/", help="target root (the image, or a staging dir)")
    f.add_argument("--seed", help=f"seed file (default ROOT/{SEED})")
    f.add_argument("--gateway", default="/opt/office-gateway/current/bin/gateway", help="the gateway command")
    f.add_argument("--templates", help="NUT templates (default: the image's, else the repo's hw/nut)")
    n = sub.add_parser("nut", help="render NUT's files from a gateway.toml")
    n.add_argument("--config", required=True)
    n.add_argument("--out", required=True)
    n.add_argument("--templates")
    n.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a NUT value")
    args = p.parse_args(argv)

    def templates_dir(root: Path) -> Path:
        if args.templates:
            return Path(args.templates)
        staged = root / str(IMAGE_TEMPLATES).lstrip("/")
        return staged if staged.exists() else REPO_TEMPLATES

    try:
        if args.cmd == "firstboot":
            root = Path(args.root)
            seed = Path(args.seed) if args.seed else root / SEED
            try:
                firstboot(root, seed, args.gateway.split(), templates_dir(root))
            except RenderError as exc:
                # the admin reads the SD card on a PC: leave the reason beside the seed
                seed.with_name("office-gateway.errors.txt").write_text(f"{exc}\n", encoding="utf-8")
                raise
            print(f"office-gateway: configured from {seed}")
        else:
            cfg = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
            overrides: dict[str, Any] = dict(kv.split("=", 1) for kv in args.set)
            ups = cfg.get("ups", {})
            secrets_ = {"gateway_password": ups.get("password") or secrets.token_urlsafe(24),
                        "upsmon_password": overrides.pop("upsmon_password", None) or secrets.token_urlsafe(24)}
            files = render_nut(nut_values(overrides, ups, secrets_), templates_dir(Path("/")))
            write_nut(files, Path(args.out), Path("/"))
            print(f"office-gateway: NUT files in {args.out}")
    except (RenderError, OSError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
