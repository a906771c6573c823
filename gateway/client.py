"""Talks to the running daemon through its public HTTP API (what the CLI uses)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import config as config_mod
from gateway.core.errors import ConfigError, GatewayError


class DaemonUnreachable(GatewayError):
    """No daemon answers (exit 3)."""


class ApiError(GatewayError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Client:
    url: str
    token: str | None = None
    timeout_s: float = 20.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
                ctype = resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)["error"]
                raise ApiError(exc.code, err.get("code", "error"), err.get("message", "")) from None
            except (ValueError, KeyError, TypeError):
                raise ApiError(exc.code, "http", f"HTTP {exc.code} from {self.url}{path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonUnreachable(f"no daemon answers at {self.url} ({reason})") from None
        if "json" in ctype:
            return json.loads(raw)
        return raw.decode("utf-8", "replace")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body)


def _from_state_dir(state_dir: Path, url: str | None) -> Client | None:
    info = state_dir / "daemon.json"
    token_file = state_dir / "api.token"
    token = token_file.read_text().strip() if token_file.exists() and os.access(token_file, os.R_OK) else None
    if url is None and info.exists():
        try:
            url = json.loads(info.read_text())["url"]
        except (ValueError, KeyError, OSError):
            url = None
    if url is None:
        return None
    return Client(url, token)


def find(config_path: str | None = None, url: str | None = None) -> Client:
    """Where the daemon is: --url / $GATEWAY_URL, the config's state dir, or the running lab."""
    url = url or os.environ.get("GATEWAY_URL")
    token = os.environ.get("GATEWAY_TOKEN")
    paths = [Path(config_path)] if config_path else [config_mod.DEFAULT_PATH]
    for p in paths:
        if p.exists():
            try:
                cfg = config_mod.load(p)
            except ConfigError:
                continue
            if url and not url.startswith("http://0.0.0.0"):
                c = _from_state_dir(cfg.state_dir, url)
            else:
                c = _from_state_dir(cfg.state_dir, None)
            if c is not None:
                c.token = token or c.token
                return _fix_any_host(c)
    if not config_path:
        lab = _lab_client()
        if lab is not None:
            if url:
                lab.url = url
            lab.token = token or lab.token
            return lab
    if url:
        return Client(url, token)
    raise DaemonUnreachable("no daemon found: no config at "
                            f"{config_path or config_mod.DEFAULT_PATH} and no lab is up (give --url)")


def _fix_any_host(c: Client) -> Client:
    c.url = c.url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:")
    return c


def _lab_client() -> Client | None:
    try:
        from gateway.lab import cli as lab_cli
    except ImportError:
        return None
    current = getattr(lab_cli, "current_lab", None)
    if current is None:
        return None
    status = current()
    if not status or not status.get("web"):
        return None
    cfg_path = status.get("config")
    token = None
    if cfg_path and Path(cfg_path).exists():
        try:
            cfg = config_mod.load(cfg_path)
            tf = cfg.state_dir / "api.token"
            token = tf.read_text().strip() if tf.exists() else None
        except ConfigError:
            pass
    return Client(status["web"], token)
