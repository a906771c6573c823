"""Writes journal rows as fast as it can, printing each committed id; killed with SIGKILL by the test."""

import sys

from gateway.store import Journal

j = Journal(sys.argv[1])
n = 0
while True:
    n += 1
    with j.transaction() as c:  # a multi-row change: both rows or neither
        cur = c.execute("INSERT INTO events (ts, kind, message, severity, data) VALUES (?, 'test.a', ?, 'info', '{}')",
                        (float(n), f"a{n}"))
        c.execute("INSERT INTO loads (name, state, reason, override, updated_at) VALUES (?, 'off', ?, 'auto', ?) "
                  "ON CONFLICT(name) DO UPDATE SET reason = excluded.reason", (f"l{n % 7}", f"e{cur.lastrowid}", float(n)))
    print(cur.lastrowid, flush=True)
