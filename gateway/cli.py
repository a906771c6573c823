"""The ``gateway`` command.  It only parses and calls: the daemon does the work, through its HTTP API.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config, 3 daemon unreachable.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from gateway import config as config_mod
from gateway.client import ApiError, Client, DaemonUnreachable, find
from gateway.core.errors import ConfigError, GatewayError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one clear line and exit 2, not the usage wall
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gateway", description="Office Gateway: keeps the office working through outages.")
    p.add_argument("--config", help=f"config file (default {config_mod.DEFAULT_PATH})")
    p.add_argument("--url", help="the daemon's address, e.g. http://127.0.0.1:8080 (default: from the config)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("run", help="run the daemon (systemd runs this)")
    s.add_argument("--config", dest="run_config", help="config file")

    s = sub.add_parser("check-config", help="validate a config file; exit 2 with file:line: key: message")
    s.add_argument("path", nargs="?", help="config file (default: --config or the system config)")

    s = sub.add_parser("status", help="the running daemon's state")
    s.add_argument("--json", action="store_true", help="print the /api/v1/status snapshot")

    s = sub.add_parser("failover", help="manual override of the active uplink")
    s.add_argument("target", choices=["lte", "wired", "auto"])

    s = sub.add_parser("loads", help="list PoE loads, or shed/restore them")
    s.add_argument("action", nargs="?", choices=["shed", "restore", "auto"])
    s.add_argument("name", nargs="?", help="load name")
    s.add_argument("--tier", type=int, help="act on every load of this tier")

    s = sub.add_parser("drill", help="run a drill now (power or wan), or list drills")
    s.add_argument("kind", choices=["power", "wan", "list"])
    s.add_argument("--minutes", type=float, help="how long the drill cuts the primary (wan)")
    s.add_argument("--confirm-mains-cut", action="store_true",
                   help="power: a real mains cut instead of the UPS's own battery test")
    s.add_argument("--scheduled", action="store_true", help="only if a drill is due (for the timer)")

    s = sub.add_parser("incidents", help="list incidents")
    s.add_argument("--open", action="store_true", help="only the open incident, with its runbook")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("report", help="the post-incident report")
    s.add_argument("id", type=int)
    s.add_argument("--format", choices=["md", "json", "html"], default="md")

    s = sub.add_parser("maintenance", help="maintenance windows")
    msub = s.add_subparsers(dest="maction", metavar="ACTION", parser_class=_Parser)
    msub.required = True
    a = msub.add_parser("add", help="add a window")
    a.add_argument("name")
    a.add_argument("--start", help="one-off start, ISO date-time (2026-12-01T19:30)")
    a.add_argument("--end", help="one-off end, ISO date-time")
    a.add_argument("--recurrence", help='e.g. "weekly tue,thu 19:30-21:00", "monthly first sat 10:00-13:00"')
    a.add_argument("--kind", choices=["window", "freeze"], default="window")
    a.add_argument("--service", action="append", default=[], dest="services", help="affected service")
    a.add_argument("--switch-to-lte", action="store_true")
    a.add_argument("--description", default="")
    msub.add_parser("list", help="list windows")
    c = msub.add_parser("cancel", help="cancel a window")
    c.add_argument("id", type=int)

    s = sub.add_parser("ack", help="acknowledge the current alert (silences the buzzer, stops escalation)")

    sub.add_parser("passwd", help="make an admin password hash for [web] admin_password_hash")

    try:
        from gateway.lab.cli import add_lab_parser
    except ImportError:
        lab = sub.add_parser("lab", help="the virtual office (not built yet)")
        lab.add_argument("rest", nargs=argparse.REMAINDER)
    else:
        add_lab_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except DaemonUnreachable as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as exc:
        if exc.code == "unknown_action":
            print(f"gateway: {exc.message}: that capability is not built yet", file=sys.stderr)
            return EXIT_FAIL
        print(f"gateway: {exc.message} ({exc.code})", file=sys.stderr)
        return EXIT_USAGE if 400 <= exc.status < 500 else EXIT_FAIL
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL


def _client(args: argparse.Namespace) -> Client:
    return find(args.config, args.url)


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd == "run":
        from gateway.runtime.daemon import run

        return run(args.run_config or args.config or str(config_mod.DEFAULT_PATH))
    if cmd == "check-config":
        path = args.path or args.config or str(config_mod.DEFAULT_PATH)
        config_mod.load(path)
        print(f"{path}: ok")
        return EXIT_OK
    if cmd == "lab":
        try:
            from gateway.lab.cli import run_lab
        except ImportError:
            print("gateway lab: not built yet", file=sys.stderr)
            return EXIT_FAIL
        return run_lab(args)
    if cmd == "passwd":
        return _passwd()
    c = _client(args)
    if cmd == "status":
        snap = c.get("/api/v1/status")
        print(json.dumps(snap, indent=2) if args.json else _status_text(snap))
        return EXIT_OK
    if cmd == "failover":
        res = c.post("/api/v1/failover", {"target": args.target})
        print(res.get("message") or f"failover: {args.target}")
        return EXIT_OK
    if cmd == "loads":
        return _loads(c, args)
    if cmd == "drill":
        return _drill(c, args)
    if cmd == "incidents":
        rows = c.get("/api/v1/incidents" + ("?open=1" if args.open else ""))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(_incidents_text(rows, args.open))
        return EXIT_OK
    if cmd == "report":
        fmt = {"md": "", "json": "?format=json", "html": "?format=html"}[args.format]
        out = c.get(f"/api/v1/incidents/{args.id}/report{fmt}")
        print(json.dumps(out, indent=2) if isinstance(out, (dict, list)) else out)
        return EXIT_OK
    if cmd == "maintenance":
        return _maintenance(c, args)
    if cmd == "ack":
        res = c.post("/api/v1/alerts/ack", {})
        print(res.get("message", "acknowledged"))
        return EXIT_OK
    raise AssertionError(cmd)


def _passwd() -> int:
    from werkzeug.security import generate_password_hash

    if sys.stdin.isatty():
        pw = getpass.getpass("admin password: ")
        if pw != getpass.getpass("again: "):
            print("gateway passwd: the two passwords differ", file=sys.stderr)
            return EXIT_USAGE
    else:
        pw = sys.stdin.readline().rstrip("\n")
    if len(pw) < 8:
        print("gateway passwd: use at least 8 characters", file=sys.stderr)
        return EXIT_USAGE
    print(generate_password_hash(pw))
    return EXIT_OK


def _loads(c: Client, args: argparse.Namespace) -> int:
    snap = c.get("/api/v1/status")
    loads = snap.get("loads", [])
    if args.action is None:
        if not loads:
            print("no loads configured")
        for ld in loads:
            print(f"{ld['name']:<24} tier {ld['tier']}  {ld['state']:<3}  {ld.get('switch', '')}:{ld.get('port', '')}"
                  f"  {ld.get('reason') or ''}")
        return EXIT_OK
    state = {"shed": "off", "restore": "on", "auto": "auto"}[args.action]
    if args.tier is not None:
        names = [ld["name"] for ld in loads if ld["tier"] == args.tier]
        if not names:
            print(f"gateway loads: no load on tier {args.tier}", file=sys.stderr)
            return EXIT_USAGE
    elif args.name:
        names = [args.name]
    else:
        print("gateway loads: give a load NAME or --tier N", file=sys.stderr)
        return EXIT_USAGE
    for name in names:
        res = c.post(f"/api/v1/loads/{name}", {"state": state})
        print(res.get("message") or f"{name}: {state}")
    return EXIT_OK


def _drill(c: Client, args: argparse.Namespace) -> int:
    if args.kind == "list":
        for d in c.get("/api/v1/drills"):
            print(f"#{d['id']} {d['kind']:<6} {d['status']:<10} started {d.get('started_at_iso', d.get('started_at'))}")
        return EXIT_OK
    body: dict[str, Any] = {"kind": args.kind}
    if args.minutes is not None:
        body["minutes"] = args.minutes
    if args.confirm_mains_cut:
        body["mains_cut"] = True
    if args.scheduled:
        body["only_if_due"] = True
    res = c.post("/api/v1/drills", body)
    print(res.get("message") or json.dumps(res))
    drill_id = res.get("id")
    if drill_id is not None and not args.scheduled:
        return _follow_drill(c, int(drill_id))
    return EXIT_OK


def _follow_drill(c: Client, drill_id: int) -> int:
    """Progress display: poll the drill until it ends, printing each new step once."""
    import time

    seen = 0
    while True:
        d = c.get(f"/api/v1/drills/{drill_id}")
        steps = d.get("results", {}).get("steps", []) if isinstance(d.get("results"), dict) else []
        for step in steps[seen:]:
            print(f"  {step}")
        seen = len(steps)
        if d.get("status") not in ("running", "pending"):
            print(f"drill #{drill_id}: {d.get('status')}")
            if d.get("incident_id"):
                print(f"report: gateway report {d['incident_id']}")
            return EXIT_OK if d.get("status") == "passed" else EXIT_FAIL
        time.sleep(1.0)


def _maintenance(c: Client, args: argparse.Namespace) -> int:
    if args.maction == "list":
        for m in c.get("/api/v1/maintenance"):
            when = m.get("recurrence") or f"{m.get('start')} - {m.get('end')}"
            nxt = f" next {m['next_start']}" if m.get("next_start") else ""
            print(f"#{m['id']} {m['name']:<24} {m['kind']:<6} {when}{nxt}")
        return EXIT_OK
    if args.maction == "cancel":
        res = c.request("DELETE", f"/api/v1/maintenance/{args.id}")
        print(res.get("message", f"cancelled #{args.id}"))
        return EXIT_OK
    body = {"name": args.name, "kind": args.kind, "start": args.start, "end": args.end,
            "recurrence": args.recurrence, "services": args.services, "switch_to_lte": args.switch_to_lte,
            "description": args.description}
    res = c.post("/api/v1/maintenance", {k: v for k, v in body.items() if v not in (None, "")})
    print(res.get("message", f"added #{res.get('id')}"))
    return EXIT_OK


def _status_text(s: dict[str, Any]) -> str:
    p = s.get("power", {})
    ups = p.get("ups", {})
    lines = [f"{s.get('site', 'Office Gateway')} — updated {s.get('updated_at')}",
             f"power:   {p.get('state')}  charge {ups.get('charge_pct')}%  runtime {ups.get('runtime_s')} s"
             f"  load {ups.get('load_pct')}%"]
    for u in s.get("uplinks", []):
        act = " (active)" if u.get("active") else ""
        lines.append(f"uplink:  {u['name']:<8} {u['state']}{act}  rtt {u.get('rtt_ms')} ms  loss {u.get('loss_pct')}%")
    if s.get("override"):
        lines.append(f"override: {s['override']}")
    m = s.get("modem") or {}
    if m.get("present"):
        lines.append(f"modem:   {m.get('registration')} {m.get('operator') or ''} {m.get('technology') or ''}"
                     f" {m.get('rssi_dbm')} dBm")
    shed = [ld["name"] for ld in s.get("loads", []) if ld.get("state") == "off"]
    lines.append(f"loads:   {len(s.get('loads', []))} configured, shed: {', '.join(shed) or 'none'}")
    inc = s.get("incident")
    lines.append(f"incident: #{inc['id']} {inc.get('severity')} {inc.get('title', '')}" if inc else "incident: none")
    return "\n".join(lines)


def _incidents_text(rows: Any, open_only: bool) -> str:
    if isinstance(rows, dict):
        rows = rows.get("incidents", [])
    if not rows:
        return "no open incident" if open_only else "no incidents"
    out = []
    for r in rows:
        state = "open" if not r.get("closed_at") else "closed"
        out.append(f"#{r['id']} {state:<6} {r.get('severity', ''):<8} {r.get('title', '')}")
        if open_only:
            for item in r.get("checklist", []) or []:
                mark = "x" if item.get("done") else " "
                out.append(f"   [{mark}] {item.get('text')}")
    return "\n".join(out)
