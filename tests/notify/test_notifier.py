"""The apprise Notifier's own promises: apprise is imported on the first send only (a quiet box never
loads it), and a URL apprise does not understand is refused at that send, with the target named."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import asyncio, sys
from gateway.core.errors import DeviceRefused
from gateway.drivers.notify import Notifier

n = Notifier({"duty": "json://127.0.0.1:9/", "odd": "nosuchscheme://x"}, timeout_s=30)
print("after init:", "apprise" in sys.modules)
try:
    asyncio.run(n.send("odd", "t", "b"))
except DeviceRefused as exc:
    print("refused:", exc)
print("after send:", "apprise" in sys.modules, sorted(n.invalid))
"""


def test_apprise_loads_on_the_first_send_and_refuses_a_url_it_does_not_know() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.splitlines() == [
        "after init: False",
        "refused: notify target 'odd': apprise does not understand its URL",
        "after send: True ['odd']",
    ]
