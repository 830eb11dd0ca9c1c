"""The platform as deployed, on services the test owns: :class:`Stack`.

``Stack.up()`` initdb's a PostgreSQL cluster and starts a Redis on free ports, migrates a
fresh database, seeds the demo partners against the simulator's port, and starts
supervisord with ``deploy/supervisord.conf`` (gunicorn, a Celery worker per queue, beat).
The simulator runs as its own process (``manage.py simulate_partners``), restarted per
scenario with the lenders' behaviour that scenario needs and a fresh log. ``down()`` stops
everything it started, and only that.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.faults.services import (
    PostgresCluster,
    Process,
    RedisServer,
    ServiceError,
    Supervisor,
    free_port,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROGRAMS = [
    "web",
    "worker-ping",
    "worker-post",
    "worker-webhooks",
    "worker-billing",
    "worker-default",
    "beat",
]
# Our variables win over the caller's: the shared DATABASE_URL must never be reached.
_OWN = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL", "MARKETPLACE_VAR_DIR")

LenderOverrides = Mapping[str, Mapping[str, Any]]  # slug (or "*") -> SimulatedLender knobs


class Stack:
    def __init__(
        self, *, web_workers: int = 3, worker_concurrency: int = 3, keep: bool = False
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faults-"))
        self.root.chmod(0o755)  # the postgres user must reach its data directory
        self.keep = keep
        self.web_port = free_port()
        self.sim_port = free_port()
        self.pg = PostgresCluster(self.root / "postgres", free_port())
        self.run_dir = self.root / "run"
        self.var_dir = self.root / "var"
        self.run_dir.mkdir()
        self.var_dir.mkdir()
        self.env = self._environment(web_workers, worker_concurrency)
        self.redis = RedisServer(self.root, free_port(), self.env)
        self.env["CELERY_BROKER_URL"] = self.redis.url
        self.supervisor = Supervisor(
            ROOT / "deploy" / "supervisord.conf", BIN, self.run_dir, self.env, ROOT
        )
        self.simulator: Process | None = None
        self.simulator_log: Path | None = None
        self.source_key = ""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _environment(self, web_workers: int, worker_concurrency: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _OWN}
        env.update(
            DATABASE_URL=self.pg.url,
            MARKETPLACE_VAR_DIR=str(self.var_dir),
            MARKETPLACE_ROOT=str(ROOT),
            MARKETPLACE_BIN=str(BIN),
            MARKETPLACE_RUN_DIR=str(self.run_dir),
            WEB_BIND=f"127.0.0.1:{self.web_port}",
            WEB_WORKERS=str(web_workers),
            WORKER_CONCURRENCY=str(worker_concurrency),
            DEBUG="false",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            # Partners' postbacks come in bursts here; rate limits are not under test.
            API_RATE_LIMIT_PER_MINUTE="1000000",
            # This checkout's code, also for console scripts (gunicorn, celery) whose own
            # directory is first on sys.path.
            PYTHONPATH=str(ROOT),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONUNBUFFERED="1",
        )
        return env

    # ---- lifecycle

    def up(self, log: Callable[[str], None]) -> None:
        started = time.monotonic()
        self.pg.init()
        self.pg.start()
        self.pg.create_database()
        self.redis.start()
        log(f"postgres :{self.pg.port}, redis :{self.redis.port} in {self.root}")
        self.manage("migrate", "--noinput", "-v0")
        self.manage(
            "seed_demo",
            "--simulator-url",
            f"http://127.0.0.1:{self.sim_port}",
            "--api-base-url",
            self.base_url,
        )
        self.source_key = json.loads((self.var_dir / "demo.json").read_text())["source_key"]
        self.supervisor.start()
        self.supervisor.wait_running(PROGRAMS, timeout=120)
        wait_for_port(self.web_port, timeout=60, what="gunicorn", log=self.run_dir / "web.log")
        # The port is gunicorn's master; the answer comes once a worker has booted.
        httpx.get(f"{self.base_url}/api/v1/partner/me", timeout=120)
        log(f"platform up on {self.base_url} in {time.monotonic() - started:.0f}s")

    def down(self) -> None:
        for stop in (
            self.stop_simulator,
            self.supervisor.stop,
            self._kill_strays,
            self.redis.stop,
            self.pg.stop,
        ):
            try:
                stop()
            except (ServiceError, subprocess.SubprocessError, OSError) as exc:
                print(f"faults: could not stop cleanly: {exc!r}", file=sys.stderr)

    def _kill_strays(self) -> None:
        """Pool processes whose worker was killed outlive it in their old process group,
        where supervisord's stop does not reach: find ours by the run directory in their
        environment (no other process has it) and end them."""
        mark = f"MARKETPLACE_RUN_DIR={self.run_dir}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)

    def manage(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise ServiceError(f"manage.py {' '.join(args)} exited {done.returncode}:\n{tail}")
        return done

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # ---- the partner simulator

    def start_simulator(self, name: str, overrides: LenderOverrides | None = None) -> Path:
        """(Re)start the simulator with the seeded lenders, changed by ``overrides``, and a
        fresh log; returns the log's path."""
        self.stop_simulator()
        config = json.loads((self.var_dir / "simulator.json").read_text())
        for lender in config["lenders"]:
            for key in ("*", lender["slug"]):
                lender.update((overrides or {}).get(key, {}))
        path = self.root / f"simulator-{name}.json"
        path.write_text(json.dumps(config))
        self.simulator_log = self.root / f"lenders-{name}.jsonl"
        self.simulator = Process(
            "simulator",
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "simulate_partners",
                "--config",
                str(path),
                "--port",
                str(self.sim_port),
                "--log",
                str(self.simulator_log),
                "--postback-retries",
                "20",
                "--postback-max-backoff",
                "5",
            ],
            log=self.root / f"simulator-{name}.log",
            env=self.env,
            cwd=ROOT,
        )
        self.simulator.start()
        wait_for_port(self.sim_port, timeout=60, what="simulator", log=self.simulator.log)
        return self.simulator_log

    def stop_simulator(self) -> None:
        if self.simulator is not None:
            self.simulator.stop(signal.SIGINT, timeout=15)  # Ctrl-C: prints its stats
            self.simulator = None

    # ---- faults

    def kill_worker(self, program: str, *, child: bool = False) -> int:
        """kill -9 the program's main process (``child``: one of its pool processes);
        returns the pid killed, 0 if none."""
        pid = self.supervisor.pid(program)
        if child and pid:
            pid = self._pool_process(pid, timeout=90)
        if pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    @staticmethod
    def _pool_process(parent: int, *, timeout: float) -> int:
        """A child of ``parent`` (a worker just restarted forks its pool after booting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kids = subprocess.run(
                ["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False
            ).stdout.split()
            if kids:
                return int(kids[0])
            time.sleep(0.5)
        return 0

    def wait_restarted(self, program: str, old_pid: int, *, timeout: float = 60) -> float:
        """Seconds until supervisord runs ``program`` again under a new pid."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            pid = self.supervisor.pid(program)
            if pid and pid != old_pid and self.supervisor.statuses().get(program) == "RUNNING":
                return time.monotonic() - started
            time.sleep(0.25)
        raise ServiceError(f"supervisord did not restart {program} within {timeout:.0f}s")
