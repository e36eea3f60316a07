"""`harvest schedule export`: Kubernetes YAML, systemd units and crontab lines, each parsed back; no secret in
any of them whatever the environment and gleaner.toml hold."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from harvest.cli import app
from harvest.jobs.calendar import on_calendar
from harvest.jobs.config import Job, JobSource
from harvest.jobs.export import SECRET, SECRET_KEYS, ExportRequest, export_jobs, public_catalog_url
from harvest.jobs.schedule import next_run
from storage.errors import GleanerError

PASSWORD = "hunter2-pg-password"
AWS_SECRET = "aws-secret-do-not-print"
AWS_KEY = "AKIAEXAMPLEKEYID"

CLOUD = f"""\
[store]
url = "s3://shoe-bucket/shoes"
endpoint_url = "http://seaweed.internal:8333"
addressing_style = "path"

[catalog]
url = "postgresql://gleaner:{PASSWORD}@db.internal:5432/gleaner"

[[jobs]]
name = "digits"
schedule = "0 3 * * *"
targets = true

[[jobs.sources]]
scrape = ["https://example.org/catalogue/index.html"]
label_from = "css:h1"

[[jobs]]
name = "paris"
schedule = "30 6 * * mon-fri"
timezone = "Europe/Paris"

[[jobs.sources]]
folder = "inbox"

[[jobs]]
name = "by_hand"

[[jobs.sources]]
folder = "inbox"
"""


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace on S3 and PostgreSQL (only its gleaner.toml: exporting connects to neither), with
    credentials in the environment as a developer's shell has them."""
    root = tmp_path / "shoes"
    root.mkdir()
    (root / "gleaner.toml").write_text(CLOUD, encoding="utf-8")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    return root


def export(root: Path, fmt: str, **options: Any) -> tuple[str, list[str]]:
    result = export_jobs(ExportRequest(root=root, format=fmt, **options))
    return result.text(), result.warnings


def assert_no_secrets(text: str) -> None:
    for secret in (PASSWORD, AWS_SECRET, AWS_KEY):
        assert secret not in text


# ---- Kubernetes


def test_k8s_is_a_config_map_and_a_forbid_cron_job_per_scheduled_job(cloud: Path) -> None:
    text, warnings = export(cloud, "k8s")
    assert_no_secrets(text)
    documents = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in documents] == ["ConfigMap", "ConfigMap", "CronJob", "CronJob"]  # not by_hand
    assert warnings[0] == "not exported (no schedule): by_hand"
    assert warnings[1].startswith("job(s) paris read files or folders of this machine")
    config, workspace, digits, paris = documents
    for cron_job in (digits, paris):
        assert cron_job["apiVersion"] == "batch/v1"
        assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    assert digits["spec"]["schedule"] == "0 3 * * *" and "timeZone" not in digits["spec"]
    assert paris["spec"]["schedule"] == "30 6 * * mon-fri" and paris["spec"]["timeZone"] == "Europe/Paris"
    pod = digits["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:4] == ["harvest", "jobs", "run", "digits"]
    assert "completionMode" not in digits["spec"]["jobTemplate"]["spec"]  # one worker unless asked
    # S3 and PostgreSQL settings from the ConfigMap, without the password
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert config["data"]["GLEANER_CATALOG"] == "postgresql://gleaner@db.internal:5432/gleaner"
    assert config["data"]["GLEANER_STORE"] == "s3://shoe-bucket/shoes"
    assert config["data"]["AWS_ENDPOINT_URL_S3"] == "http://seaweed.internal:8333"
    env_names = {"GLEANER_STORE", "GLEANER_CATALOG", "AWS_ENDPOINT_URL_S3", "GLEANER_S3_ADDRESSING_STYLE"}
    assert set(config["data"]) == env_names  # every key a variable name (envFrom)
    # the workspace's gleaner.toml, mounted where --workspace points
    toml = workspace["data"]["gleaner.toml"]
    assert 'name = "digits"' in toml and 'url = "postgresql://gleaner@db.internal:5432/gleaner"' in toml
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount["mountPath"] == "/workspace/gleaner.toml"
    assert container["command"][-2:] == ["--workspace", "/workspace"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == workspace["metadata"]["name"]
    # credentials by reference to the Secret
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(refs) == set(SECRET_KEYS) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD"}
    assert {ref["name"] for ref in refs.values()} == {SECRET}
    assert all("value" not in e for e in container["env"])


def test_k8s_parallelism_is_an_indexed_job_of_n_workers(cloud: Path) -> None:
    text, _ = export(cloud, "k8s", job="digits", parallelism=3, image="registry.example/gleaner:1.2")
    *_, cron_job = yaml.safe_load_all(text)
    job_spec = cron_job["spec"]["jobTemplate"]["spec"]
    assert (job_spec["completionMode"], job_spec["completions"], job_spec["parallelism"]) == ("Indexed", 3, 3)
    (container,) = job_spec["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/gleaner:1.2"
    assert container["command"][:4] == ["harvest", "jobs", "run", "digits"]


def test_k8s_names_are_dns_names_and_distinct(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    jobs = "".join(
        f'[[jobs]]\nname = "{name}"\nschedule = "0 3 * * *"\n[[jobs.sources]]\nfolder = "in"\n'
        for name in ("Shoes_A", "shoes-a", "x" * 80)
    )
    (root / "gleaner.toml").write_text(jobs, encoding="utf-8")
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(export(root, "k8s")[0]) if d["kind"] == "CronJob"]
    assert len(set(names)) == 3
    assert all(len(name) <= 52 and name == name.lower() and name[-1].isalnum() for name in names)
    assert names[1] == "gleaner-shoes-a"


def test_no_secret_reaches_the_manifests_from_the_environment(cloud: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLEANER_CATALOG", f"postgresql://admin:{PASSWORD}@other.internal/gleaner?password={PASSWORD}")
    text, _ = export(cloud, "k8s")
    assert_no_secrets(text)
    config = next(yaml.safe_load_all(text))
    assert config["data"]["GLEANER_CATALOG"] == "postgresql://admin@other.internal/gleaner"


def test_a_local_workspace_warns_and_still_writes_the_manifests(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "gleaner.toml").write_text(
        '[[jobs]]\nname = "d"\nschedule = "0 3 * * *"\n[[jobs.sources]]\nscrape = ["https://example.org/"]\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["schedule", "export", "--format", "k8s", "--workspace", str(root)])
    assert result.exit_code == 0
    assert [d["kind"] for d in yaml.safe_load_all(result.stdout)] == ["ConfigMap", "ConfigMap", "CronJob"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "store and catalog are local" in warnings[0] and "S3" in warnings[0]


def test_public_catalog_url_drops_every_password() -> None:
    assert public_catalog_url("postgresql://u:p@h:5/db") == "postgresql://u@h:5/db"
    assert public_catalog_url("postgresql+psycopg://u:p@h/db?sslmode=require&password=p") == (
        "postgresql+psycopg://u@h/db?sslmode=require"
    )
    assert public_catalog_url("sqlite:////srv/catalog.db") == "sqlite:////srv/catalog.db"


# ---- systemd


def _units(root: Path) -> dict[str, configparser.ConfigParser]:
    result = export_jobs(ExportRequest(root=root, format="systemd"))
    parsed = {}
    for name, body in result.files.items():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(body)
        parsed[name] = parser
    return parsed


def test_systemd_is_a_oneshot_service_and_a_persistent_timer_per_job(cloud: Path) -> None:
    units = _units(cloud)
    assert sorted(units) == sorted(
        ["gleaner-digits.service", "gleaner-digits.timer", "gleaner-paris.service", "gleaner-paris.timer"]
    )
    service, timer = units["gleaner-digits.service"], units["gleaner-digits.timer"]
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == str(cloud)
    assert service["Service"]["ExecStart"].endswith(f"jobs run digits --workspace {cloud}")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 03:00:00 UTC"
    assert timer["Timer"]["Persistent"] == "true"  # a slot missed while the machine was off runs once
    assert timer["Timer"]["Unit"] == "gleaner-digits.service"
    assert units["gleaner-paris.timer"]["Timer"]["OnCalendar"] == "Mon..Fri *-*-* 06:30:00 Europe/Paris"
    assert_no_secrets("".join(export(cloud, "systemd")[0]))


def test_systemd_reads_the_units_without_a_complaint(cloud: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: the units are not checked by systemd")
    folder = tmp_path / "units"
    folder.mkdir()
    for name, body in export_jobs(ExportRequest(root=cloud, format="systemd")).files.items():
        (folder / name).write_text(body, encoding="utf-8")
    units = sorted(str(path) for path in folder.iterdir())
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr


def test_cron_day_of_month_or_week_becomes_two_calendar_lines(tmp_path: Path) -> None:
    assert on_calendar("0 0 1,15 * sun") == ["Sun *-*-* 00:00:00 UTC", "*-*-01,15 00:00:00 UTC"]
    root = tmp_path / "ws"
    root.mkdir()
    (root / "gleaner.toml").write_text(
        '[[jobs]]\nname = "d"\nschedule = "0 0 1,15 * sun"\n[[jobs.sources]]\nfolder = "in"\n', encoding="utf-8"
    )
    timer = export_jobs(ExportRequest(root=root, format="systemd")).files["gleaner-d.timer"]
    assert timer.count("OnCalendar=") == 2


EXPRESSIONS = [
    ("0 3 * * *", "UTC"),
    ("*/15 * * * 1-5", "UTC"),
    ("30 6 * * mon-fri", "Europe/Paris"),
    ("1-10/3 2 * * *", "UTC"),
    ("0 0 */2 * *", "America/New_York"),
    ("0 0 * jan,jul *", "UTC"),
    ("*/5 9-17 * * sat,sun", "Asia/Tokyo"),
    ("0 12 1 * 0,1", "UTC"),
]


def _systemd_elapses(spec: str, base: datetime, count: int) -> list[datetime]:
    run = subprocess.run(
        ["systemd-analyze", "calendar", f"--iterations={count}", f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC", spec],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        check=True,
    )
    found = []
    for line in run.stdout.splitlines():
        line = line.strip()
        if line.startswith(("Next elapse:", "Iter. #")):
            stamp = line.split(":", 1)[1].strip()  # "Mon 2026-03-30 00:30:00 UTC"
            found.append(datetime.strptime(stamp, "%a %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC))
    return found


@pytest.mark.parametrize(("schedule", "zone"), EXPRESSIONS)
def test_on_calendar_fires_when_the_cron_expression_does(schedule: str, zone: str) -> None:
    """The translated OnCalendar specs, read by systemd itself, give the same next 40 runs as croniter."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here: OnCalendar not checked by systemd")
    base = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)  # far from a DST change: systemd skips absent times
    specs = on_calendar(schedule, zone)
    theirs = sorted({moment for spec in specs for moment in _systemd_elapses(spec, base, 40)})[:40]
    job = Job(name="j", schedule=schedule, timezone=zone, sources=(JobSource("folder", Path("/in")),))
    ours, moment = [], base
    for _ in range(40):
        following = next_run(job, moment)
        assert following is not None
        ours.append(following)
        moment = following
    assert theirs == ours


# ---- cron


def test_cron_lines_change_to_the_workspace_and_run_the_job(cloud: Path) -> None:
    text, _ = export(cloud, "cron")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "CRON_TZ=UTC"
    assert lines[1].startswith(f"0 3 * * * cd {cloud} && ")
    assert lines[1].endswith("harvest jobs run digits")
    assert lines[2] == "CRON_TZ=Europe/Paris"
    assert lines[3].startswith(f"30 6 * * mon-fri cd {cloud} && ")
    assert "no time zone per line" in text
    assert_no_secrets(text)


def test_cron_escapes_percent_and_quotes_paths(tmp_path: Path) -> None:
    root = tmp_path / "my 100% shoes"
    root.mkdir()
    (root / "gleaner.toml").write_text(
        '[[jobs]]\nname = "d"\nschedule = "0 3 * * *"\n[[jobs.sources]]\nfolder = "in"\n', encoding="utf-8"
    )
    line = export(root, "cron")[0].splitlines()[-1]
    assert "cd '" in line and "100\\%" in line  # cron reads a bare % as a new line


# ---- the command


def test_out_writes_the_file_and_systemd_a_folder_of_units(cloud: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "jobs.yaml"
    done = runner.invoke(app, ["schedule", "export", "--format", "k8s", "--out", str(target), "-w", str(cloud)])
    assert done.exit_code == 0 and done.stdout == ""
    assert [d["kind"] for d in yaml.safe_load_all(target.read_text())] == ["ConfigMap"] * 2 + ["CronJob"] * 2
    units = tmp_path / "units"
    done = runner.invoke(app, ["schedule", "export", "--format", "systemd", "--out", str(units), "-w", str(cloud)])
    assert done.exit_code == 0
    assert sorted(p.name for p in units.iterdir())[0] == "gleaner-digits.service"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "unknown export format 'xml'"),
        (["--format", "cron", "--parallelism", "2"], "--parallelism is for --format k8s"),
        (["--format", "systemd", "--image", "x"], "--image is for --format k8s"),
        (["--format", "k8s", "--parallelism", "0"], "--parallelism must be at least 1"),
        (["--format", "k8s", "--job", "nosuch"], "no job named 'nosuch'"),
        (["--format", "k8s", "--job", "by_hand"], "job 'by_hand' has no schedule"),
    ],
)
def test_bad_requests_are_one_line(cloud: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harvest", "schedule", "export", *args, "--workspace", str(cloud)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_schedules_cron_cannot_read_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "gleaner.toml").write_text(
        '[[jobs]]\nname = "d"\nschedule = "0 0 L * *"\n[[jobs.sources]]\nfolder = "in"\n', encoding="utf-8"
    )
    for fmt in ("cron", "systemd", "k8s"):
        with pytest.raises(GleanerError, match="uses L or #"):
            export(root, fmt)
