"""MemoryDenyWriteExecute=yes in the unit: the daemon's Python must run without W+X memory.

systemd enforces it with a seccomp filter; the kernel's PR_SET_MDWE (Linux 6.3+) enforces the same
rule (no mapping may become writable and executable), so the test runs the daemon's imports and a
ctypes callback — the classic W+X user — in a child process that set it first.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

CHILD = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
assert libc.prctl(66, 0, 0, 0, 0) & 1
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit("W+X mapping allowed: MDWE is not in force")
# what the daemon loads
import gateway.runtime.daemon, gateway.store, gateway.config, web.serve
import pyroute2, gpiozero, serial, flask, uvicorn.protocols.http.httptools_impl, sqlite3, apprise, pysnmp
cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert cb(41) == 42
print("ok")
"""


def test_daemon_imports_run_under_mdwe() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0:
        pytest.skip(f"kernel without PR_SET_MDWE ({os.uname().release})")
    res = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    if res.returncode == 77:
        pytest.skip("PR_SET_MDWE refused")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]
