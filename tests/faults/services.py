"""The services a fault test may break, each its own process on its own port: a PostgreSQL
cluster (initdb into a temporary directory; never the shared one), a Redis server, the
partner simulator and supervisord with the platform's processes."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

PG_BIN = Path(os.environ.get("FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))


class ServiceError(RuntimeError):
    """A service did not start or stop in time (the message says which and where its log is)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} is not listening on {port} after {timeout:.0f}s (log: {log})")


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


class PostgresCluster:
    """A throwaway cluster in ``root``/pg on ``port``: trust auth for ``postgres`` on
    127.0.0.1, fsync off (a test cluster; restarts are clean shutdowns)."""

    def __init__(self, root: Path, port: int) -> None:
        self.port = port
        self.data = root / "pg"
        self.log = root / "pg.log"
        self._root = root

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/marketplace"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*_as_postgres_user(), *args], check=True, timeout=timeout, stdout=subprocess.DEVNULL
        )

    def init(self) -> None:
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self._root, self.data):
                os.chown(path, user.pw_uid, user.pw_gid)
            self.log.touch()
            os.chown(self.log, user.pw_uid, user.pw_gid)
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )
        settings = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": self.data,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": 200,
        }
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            conf.writelines(f"{name} = '{value}'\n" for name, value in settings.items())

    def pg_ctl(self, *args: str, timeout: float = 120) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            *args,
            timeout=timeout + 10,
        )

    def start(self) -> None:
        self.pg_ctl("start")
        wait_for_port(self.port, timeout=30, what="PostgreSQL", log=self.log)

    def restart(self) -> None:
        """A fast restart: every connection is terminated ("terminating connection due to
        administrator command"), in-flight transactions roll back."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.pg_ctl("stop", "-m", "fast")

    def create_database(self) -> None:
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-qc",
                "CREATE DATABASE marketplace",
                "postgres",
            ],
            check=True,
            timeout=60,
            stdout=subprocess.DEVNULL,
        )


class Process:
    """A child process in its own process group, logging to a file."""

    def __init__(
        self, name: str, argv: list[str], *, log: Path, env: Mapping[str, str], cwd: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env)
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


class RedisServer:
    """A Redis on ``port`` with an append-only file, as a broker in production keeps one:
    stopping it (SHUTDOWN on SIGTERM) and starting it again keeps the queued messages."""

    def __init__(self, root: Path, port: int, env: Mapping[str, str]) -> None:
        self.port = port
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = Process(
            "redis",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "no",
            ],
            log=root / "redis.log",
            env=env,
            cwd=self.dir,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process.start()
        wait_for_port(self.port, timeout=30, what="Redis", log=self.process.log)

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM)


class Supervisor:
    """supervisord (foreground, its own process group) running ``deploy/supervisord.conf``,
    and supervisorctl against it."""

    def __init__(
        self, conf: Path, bin_dir: Path, run_dir: Path, env: Mapping[str, str], cwd: Path
    ) -> None:
        self.conf = conf
        self.bin_dir = bin_dir
        self.env = dict(env)
        self.cwd = cwd
        self.process = Process(
            "supervisord",
            [str(bin_dir / "supervisord"), "-n", "-c", str(conf)],
            log=run_dir / "supervisord.out",
            env=env,
            cwd=cwd,
        )

    def start(self) -> None:
        self.process.start()

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin_dir / "supervisorctl"), "-c", str(self.conf), *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout

    def statuses(self) -> dict[str, str]:
        """``{program: state}``, e.g. ``{"worker-post": "RUNNING"}``."""
        states = {}
        for line in self.ctl("status").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                states[parts[0].split(":")[-1]] = parts[1]
        return states

    def pid(self, program: str) -> int:
        out = self.ctl("pid", f"marketplace:{program}").strip()
        return int(out) if out.isdigit() else 0

    def wait_running(self, programs: list[str], *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.statuses()
            if all(states.get(p) == "RUNNING" for p in programs):
                return
            time.sleep(0.5)
        raise ServiceError(f"supervisord programs not all RUNNING: {states}")

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM, timeout=90)
