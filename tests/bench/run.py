"""`make bench`: runs every tests/bench/bench_*.py's run(), prints a table, writes bench/results.json.

Each run() returns {"name": {"value": number, "unit": str, "baseline": number|None, "goal": str?}}.
A benchmark that cannot run here (no root, a peer missing) is reported and skipped, not faked.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    only = set(argv)
    results: dict[str, dict[str, object]] = {}
    failed: list[str] = []
    for path in sorted(Path(__file__).parent.glob("bench_*.py")):
        name = path.stem
        if only and name not in only and name.removeprefix("bench_") not in only:
            continue
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            mod = importlib.import_module(f"tests.bench.{name}")
            out = mod.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results.update(out)
        print(f"   ({time.monotonic() - started:.1f} s)", flush=True)
    out_path = ROOT / "bench" / "results.json"
    out_path.parent.mkdir(exist_ok=True)
    clean: dict[str, object] = {k: {"value": v["value"], "unit": v["unit"], "baseline": v.get("baseline")}
                                for k, v in results.items()}
    try:  # figures this run did not make (`make soak`'s, benchmarks not selected) stay as they were
        previous = json.loads(out_path.read_text())
        if isinstance(previous, dict):
            previous.pop("soak", None)  # the nested form of earlier soak runs
            kept = {k: v for k, v in previous.items() if k not in clean and isinstance(v, dict) and "value" in v
                    and (only or k.startswith("soak_"))}
            clean.update(kept)
    except (OSError, ValueError):
        pass
    out_path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    print()
    print(f"{'figure':<40} {'value':>12} {'unit':<8} {'baseline':>10}  goal")
    for k in sorted(results):
        v = results[k]
        base = v.get("baseline")
        base_s = "-" if base is None else f"{base:g}"
        print(f"{k:<40} {v['value']:>12.4g} {v['unit']:<8} {base_s:>10}  {v.get('goal', '')}")
    print(f"\nwritten to {out_path.relative_to(ROOT)}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
