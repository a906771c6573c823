"""The journal loads sqlite-utils (and click, dateutil, pluggy with it) only to build or migrate the schema:
a daemon restarted on a journal already at this version never imports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CODE = """
import sys
from gateway.store import SCHEMA_VERSION, Journal
j = Journal(sys.argv[1])
print(j.version == SCHEMA_VERSION, "sqlite_utils" in sys.modules)
"""


def test_sqlite_utils_is_loaded_to_migrate_only(tmp_path: Path) -> None:
    def open_journal() -> str:
        return subprocess.run([sys.executable, "-c", CODE, str(tmp_path / "journal.db")], capture_output=True,
                              text=True, timeout=60, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
                              ).stdout.strip()

    assert open_journal() == "True True"  # a new file: the schema is built through sqlite-utils
    assert open_journal() == "True False"  # at this version already: not loaded
