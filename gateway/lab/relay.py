"""A TCP relay from inside a lab namespace to a peer on this process's own loopback.

A rootless lab (:mod:`gateway.lab.userns`) has no link between ``{p}gw`` and the host, so the daemon reaches
upsd on the host's 127.0.0.1 through this: the listening socket is made inside ``--netns`` on ``--listen``
ADDR:PORT, every connection accepted there is passed on to ``--to`` HOST:PORT from the relay's own (the
host's) namespace, bytes both ways, a half-close passed on as a half-close.  A connection the peer refuses
is reset at once, so the client sees the peer gone, not a silent hang.

``python -m gateway.lab.relay --netns NS --listen ADDR:PORT --to HOST:PORT``; prints ``ready`` once bound.
:class:`RelayPeer` starts it and records its pid in ``relay.json`` of its workdir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

from gateway.lab.net import socket_in_netns
from gateway.lab.ups import alive, kill_pid

ROOT = Path(__file__).resolve().parents[2]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _serve_one(target: tuple[str, int], client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
    try:
        peer_r, peer_w = await asyncio.open_connection(*target)
    except OSError:
        sock = client_w.get_extra_info("socket")
        if sock is not None:  # close with RST: the nearest thing to the peer's own "connection refused"
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client_w.transport.abort()
        return
    try:
        await asyncio.gather(_pipe(client_r, peer_w), _pipe(peer_r, client_w))
    finally:
        for w in (peer_w, client_w):
            w.close()


async def serve(netns: str, listen: tuple[str, int], target: tuple[str, int]) -> None:
    sock = socket_in_netns(netns, *listen)
    server = await asyncio.start_server(lambda r, w: _serve_one(target, r, w), sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.lab.relay")
    ap.add_argument("--netns", required=True, help="the namespace the listening socket is made in")
    ap.add_argument("--listen", required=True, help="ADDR:PORT inside --netns")
    ap.add_argument("--to", required=True, help="HOST:PORT in the relay's own namespace")
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args.netns, _hostport(args.listen), _hostport(args.to)))
    except OSError as exc:
        print(f"relay: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


class RelayPeer:
    """The relay process in ``workdir`` (``relay.json``, ``relay.log``)."""

    def __init__(self, workdir: Path | str, netns: str, listen: str, target: str) -> None:
        self.workdir = Path(workdir)
        self.netns, self.listen, self.target = netns, listen, target
        self.pid: int | None = None

    @classmethod
    def attach(cls, workdir: Path | str) -> RelayPeer:
        info = json.loads((Path(workdir) / "relay.json").read_text())
        peer = cls(workdir, info["netns"], info["listen"], info["target"])
        peer.pid = info.get("pid")
        return peer

    def running(self) -> bool:
        return alive(self.pid)

    def start(self) -> RelayPeer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        argv = [sys.executable, "-m", "gateway.lab.relay", "--netns", self.netns, "--listen", self.listen,
                "--to", self.target]
        with open(self.workdir / "relay.log", "ab") as log:
            proc = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=log, start_new_session=True, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once bound, EOF if it could not bind
        proc.stdout.close()
        if line.strip() != "ready":
            kill_pid(proc.pid)
            tail = (self.workdir / "relay.log").read_text(errors="replace")[-300:].strip()
            raise RuntimeError(f"the relay {self.netns}/{self.listen} -> {self.target} did not start: {tail}")
        self.pid = proc.pid
        (self.workdir / "relay.json").write_text(json.dumps({"netns": self.netns, "listen": self.listen,
                                                             "target": self.target, "pid": self.pid}, indent=1))
        return self

    def stop(self) -> None:
        kill_pid(self.pid)
        self.pid = None
        for f in ("relay.json", "relay.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / f).unlink()
        with contextlib.suppress(OSError):
            self.workdir.rmdir()


if __name__ == "__main__":
    sys.exit(main())
