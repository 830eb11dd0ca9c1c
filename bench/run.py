"""Run every benchmark in bench/ on the PostgreSQL named by DATABASE_URL.

Each ``bench/bench_*.py`` module has ``run() -> dict[str, Result]``; ``bench/load_run.py``
(a 10-minute load run on a stack of its own) runs last, in its own process; every figure is a ratio
against a baseline measured in the same run on the same machine, because the machine is
shared and noisy: compare, don't quote absolute times alone. Results go to
``bench/results.json`` and a table on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        print("make bench needs DATABASE_URL=postgres://... (a database it may fill)")
        return 2
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    selected = set(sys.argv[1:])
    results: dict[str, dict[str, object]] = {}
    for path in sorted((ROOT / "bench").glob("bench_*.py")):
        if selected and path.stem not in selected:
            continue
        module = importlib.import_module(f"bench.{path.stem}")
        print(f"== {path.stem}", flush=True)
        results.update(module.run())
    out = ROOT / "bench" / "results.json"
    if not selected or "load_run" in selected:
        # Ten minutes against its own stack and database (tests.faults.stack), hence its own
        # process; it writes "load_run" into results.json itself.
        print("== load_run", flush=True)
        subprocess.run([sys.executable, "-m", "bench.load_run", "--duration", "600"], cwd=ROOT)
        if out.exists() and "load_run" in (written := json.loads(out.read_text())):
            results["load_run"] = written["load_run"]
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**previous, **results}, indent=2, sort_keys=True) + "\n")
    print(f"\n{'metric':<28} {'value':>10}  {'goal':<10} baseline")
    for name, result in results.items():
        print(
            f"{name:<28} {result['value']:>10}  {result.get('goal', ''):<10} {result['baseline']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
