"""The workspace's scheduled jobs as crontab lines, systemd units or Kubernetes CronJobs.

Each format runs `harvest jobs run NAME` on the job's schedule; the catch-up and no-overlap rules of
`harvest schedule` map to each host's own (systemd's Persistent=true, Kubernetes' concurrencyPolicy Forbid).
No secret is ever written: manifests name a Secret for credentials and a ConfigMap for the rest, and a catalog
URL loses its password on the way out, whatever the environment or gleaner.toml holds.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import yaml

from harvest.jobs.calendar import on_calendar
from harvest.jobs.config import Job, find_job, load_jobs
from storage.errors import GleanerError
from storage.settings import CONFIG_NAME, Settings, load_settings

__all__ = [
    "CONFIG_MAP",
    "DEFAULT_IMAGE",
    "EXPORT_FORMATS",
    "SECRET",
    "SECRET_KEYS",
    "WORKSPACE_MAP",
    "Export",
    "ExportRequest",
    "export_jobs",
    "public_catalog_url",
]

DEFAULT_IMAGE: Final = "gleaner:latest"
CONFIG_MAP: Final = "gleaner-config"  # the settings as environment variables; nothing in it is secret
WORKSPACE_MAP: Final = "gleaner-workspace"  # gleaner.toml as a file (its key is no variable name for envFrom)
SECRET: Final = "gleaner-credentials"  # created by the operator (README: Running in the cloud), never written here
SECRET_KEYS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD")
WORKSPACE_IN_POD: Final = "/workspace"
_CONFIG_IN_POD: Final = f"{WORKSPACE_IN_POD}/{CONFIG_NAME}"
_CONFIG_ITEM: Final = {"key": CONFIG_NAME, "path": CONFIG_NAME}


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the workspace, one job or all, and the Kubernetes-only choices."""

    root: Path
    format: str
    job: str | None = None
    parallelism: int | None = None
    image: str | None = None


@dataclass(frozen=True)
class Export:
    """The files of an export (name -> text, in order) and warnings for stderr."""

    files: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        """All files as one text: a lone file as it is, several each under a `# ---- NAME` line."""
        if len(self.files) == 1:
            return next(iter(self.files.values()))
        return "\n".join(f"# ---- {name}\n{body}" for name, body in self.files.items())


@dataclass(frozen=True)
class _Plan:
    request: ExportRequest
    settings: Settings
    jobs: list[Job]
    warnings: list[str]


def export_jobs(request: ExportRequest) -> Export:
    """The export of the workspace's scheduled jobs (or of `request.job`) in `request.format`."""
    writer = EXPORT_FORMATS.get(request.format)
    if writer is None:
        raise GleanerError(f"unknown export format {request.format!r} (formats: {', '.join(EXPORT_FORMATS)})")
    if request.format != "k8s":
        for option, value in (("--parallelism", request.parallelism), ("--image", request.image)):
            if value is not None:
                raise GleanerError(f"{option} is for --format k8s (pods); a {request.format} job runs on this machine")
    if request.parallelism is not None and request.parallelism < 1:
        raise GleanerError(f"--parallelism must be at least 1, not {request.parallelism}")
    return writer(_plan(request))


def _plan(request: ExportRequest) -> _Plan:
    settings = load_settings(request.root)
    jobs = load_jobs(request.root)
    warnings: list[str] = []
    if request.job is not None:
        chosen = find_job(jobs, request.job)
        if chosen.schedule is None:
            raise GleanerError(f'job {chosen.name!r} has no schedule: add schedule = "0 3 * * *" to export it')
        jobs = [chosen]
    else:
        unscheduled = [job.name for job in jobs if job.schedule is None]
        if unscheduled:
            warnings.append(f"not exported (no schedule): {', '.join(unscheduled)}")
        jobs = [job for job in jobs if job.schedule is not None]
        if not jobs:
            raise GleanerError(
                f"no scheduled jobs in {request.root / CONFIG_NAME}: add a [[jobs]] table with a schedule"
            )
    for job in jobs:
        _check_portable(job, allow_seconds=request.format == "systemd")
    return _Plan(request, settings, jobs, warnings)


def _check_portable(job: Job, *, allow_seconds: bool) -> None:
    """cron, systemd and Kubernetes read five-field cron (systemd also seconds), without croniter's L and #."""
    from croniter import croniter

    assert job.schedule is not None
    fields, nth = croniter.expand(job.schedule)
    if nth or any("l" in values for values in fields):
        raise GleanerError(
            f"job {job.name!r}: schedule {job.schedule!r} uses L or # (croniter extensions) that cron, systemd and "
            "Kubernetes do not read; `harvest schedule` runs it as it is"
        )
    if len(fields) != 5 and not (allow_seconds and len(fields) == 6):
        raise GleanerError(
            f"job {job.name!r}: schedule {job.schedule!r} has {len(fields)} fields; cron and Kubernetes read five"
        )


# ---- cron


def _cron(plan: _Plan) -> Export:
    root = str(plan.request.root)
    lines = [
        f"# Gleaner jobs of {root} (harvest schedule export --format cron); install with `crontab -e`.",
        "# cron has no time zone per line: CRON_TZ sets it for the lines below where cron reads it (cronie:",
        "# Fedora, RHEL, Arch); Debian's and Ubuntu's cron ignore it and use the system's time zone.",
        "# cron does not run a slot missed while the machine was off; `harvest schedule` and systemd timers do, once.",
    ]
    for job in plan.jobs:
        command = f"cd {shlex.quote(root)} && {shlex.quote(_harvest())} jobs run {shlex.quote(job.name)}"
        lines += [f"CRON_TZ={job.timezone}", f"{job.schedule} {command.replace('%', chr(92) + '%')}"]
    return Export({"crontab": "\n".join(lines) + "\n"}, plan.warnings)


def _harvest() -> str:
    """The `harvest` beside this interpreter (a venv's bin/), so cron's and systemd's bare PATH need not find it."""
    beside = Path(sys.executable).parent / "harvest"
    return str(beside) if beside.exists() else shutil.which("harvest") or "harvest"


# ---- systemd


def _systemd(plan: _Plan) -> Export:
    root = str(plan.request.root)
    files: dict[str, str] = {}
    for job in plan.jobs:
        assert job.schedule is not None
        unit = _unit_name(job.name)
        command = " ".join(_systemd_quote(arg) for arg in (_harvest(), "jobs", "run", job.name, "--workspace", root))
        files[f"{unit}.service"] = _ini(
            {
                "Unit": [
                    ("Description", f"Gleaner job {job.name} (harvest jobs run)"),
                    ("Wants", "network-online.target"),
                    ("After", "network-online.target"),
                ],
                "Service": [
                    ("Type", "oneshot"),
                    ("WorkingDirectory", _systemd_escape(root)),
                    ("ExecStart", command),
                ],
            }
        )
        calendar = [("OnCalendar", spec) for spec in on_calendar(job.schedule, job.timezone)]
        files[f"{unit}.timer"] = _ini(
            {
                "Unit": [("Description", f"Schedule of Gleaner job {job.name}: {job.schedule} ({job.timezone})")],
                "Timer": [*calendar, ("Persistent", "true"), ("Unit", f"{unit}.service")],
                "Install": [("WantedBy", "timers.target")],
            }
        )
    return Export(files, plan.warnings)


def _unit_name(job: str) -> str:
    return "gleaner-" + re.sub(r"[^A-Za-z0-9:_.\-]", "-", job)


def _ini(sections: dict[str, list[tuple[str, str]]]) -> str:
    return "\n".join(
        f"[{name}]\n" + "".join(f"{key}={value}\n" for key, value in pairs) for name, pairs in sections.items()
    )


def _systemd_escape(text: str) -> str:
    """systemd expands %-specifiers in these settings (and $ in ExecStart): written doubled, they stay literal."""
    return text.replace("%", "%%")


def _systemd_quote(arg: str) -> str:
    text = _systemd_escape(arg).replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9/._@:+=,%$-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---- Kubernetes


def _k8s(plan: _Plan) -> Export:
    settings = plan.settings
    warnings = list(plan.warnings)
    local = [
        what
        for what, is_local in (
            ("store", not settings.store.url.startswith("s3://")),
            ("catalog", not settings.catalog_url.startswith(("postgresql", "postgres:"))),
        )
        if is_local
    ]
    if local:
        warnings.append(
            f"this workspace's {' and '.join(local)} {'is' if len(local) == 1 else 'are'} local: pods need an S3 store "
            "and a PostgreSQL catalog (harvest init DIR --store s3://... --catalog postgresql://...)"
        )
    on_disk = [job.name for job in plan.jobs if any(source.path is not None for source in job.sources)]
    if on_disk:
        warnings.append(
            f"job(s) {', '.join(on_disk)} read files or folders of this machine: a pod sees them only where its "
            f"image or a volume puts them under {WORKSPACE_IN_POD}"
        )
    documents: list[dict[str, Any]] = [*_config_maps(plan)]
    documents += [_cron_job(plan, job) for job in plan.jobs]
    text = yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return Export({"gleaner-cronjobs.yaml": text}, warnings)


class _Dumper(yaml.SafeDumper):
    """safe_dump, with multi-line strings (the gleaner.toml) as literal blocks a person can read."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _labels(job: Job | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "gleaner", "app.kubernetes.io/component": "harvest-job"}
    if job is not None:
        labels["gleaner/job"] = _k8s_name(job.name, limit=63)
    return labels


def _k8s_name(name: str, *, limit: int) -> str:
    """A DNS-1123 name for the job; a hash of the real name keeps two that fold to the same text apart."""
    slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "job"
    if slug != name:
        slug = f"{slug[: limit - 7].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    return slug[:limit].rstrip("-")


def _config_maps(plan: _Plan) -> list[dict[str, Any]]:
    """The settings a pod reads from its environment, and the workspace's gleaner.toml it mounts."""
    settings = plan.settings
    env = {
        "GLEANER_STORE": settings.store.url,
        "GLEANER_CATALOG": public_catalog_url(settings.catalog_url),
    }
    if settings.store.endpoint_url:
        env["AWS_ENDPOINT_URL_S3"] = _no_userinfo(settings.store.endpoint_url)
    if settings.store.addressing_style != "auto":
        env["GLEANER_S3_ADDRESSING_STYLE"] = settings.store.addressing_style
    return [_config_map(CONFIG_MAP, env), _config_map(WORKSPACE_MAP, {CONFIG_NAME: _public_config(plan)})]


def _config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": _labels()}, "data": data}


def _public_config(plan: _Plan) -> str:
    """The workspace's gleaner.toml as pods read it: the same jobs, the store and catalog without secrets."""
    import tomli_w

    path = plan.request.root / CONFIG_NAME
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    settings = plan.settings
    store = dict(data.get("store", {}))
    store["url"] = settings.store.url
    if settings.store.endpoint_url:
        store["endpoint_url"] = _no_userinfo(settings.store.endpoint_url)
    data["store"] = store
    data["catalog"] = {"url": public_catalog_url(settings.catalog_url)}
    ordered: dict[str, Any] = {key: data[key] for key in ("store", "catalog", "ingest", "jobs") if key in data}
    header = "# gleaner.toml for pods (harvest schedule export --format k8s): no password; see the Secret\n"
    return header + tomli_w.dumps(ordered)


def public_catalog_url(url: str) -> str:
    """The catalog URL with no password (PostgreSQL reads it from PGPASSWORD, which the Secret sets)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return _no_userinfo(url)
    secret = [key for key in parsed.query if key.lower() in ("password", "passfile")]
    public = parsed.difference_update_query(secret)._replace(password=None)  # set(password=None) keeps it
    return public.render_as_string(hide_password=False)


def _no_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _cron_job(plan: _Plan, job: Job) -> dict[str, Any]:
    request = plan.request
    container: dict[str, Any] = {
        "name": "harvest",
        "image": request.image or DEFAULT_IMAGE,
        "command": ["harvest", "jobs", "run", job.name, "--workspace", WORKSPACE_IN_POD],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "env": [_secret_env(key) for key in SECRET_KEYS],
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE_IN_POD},
            {"name": "config", "mountPath": _CONFIG_IN_POD, "subPath": CONFIG_NAME, "readOnly": True},
        ],
    }
    job_spec: dict[str, Any] = {"backoffLimit": 3}
    workers = request.parallelism or 1
    if workers > 1:  # N pods on one run: each `harvest jobs run NAME` after the first joins it as a worker
        job_spec.update({"completionMode": "Indexed", "completions": workers, "parallelism": workers})
    job_spec["template"] = {
        "metadata": {"labels": _labels(job)},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [container],
            "volumes": [
                {"name": "workspace", "emptyDir": {}},
                {"name": "config", "configMap": {"name": WORKSPACE_MAP, "items": [_CONFIG_ITEM]}},
            ],
        },
    }
    spec: dict[str, Any] = {"schedule": job.schedule}
    if job.timezone != "UTC":
        spec["timeZone"] = job.timezone
    spec.update(
        {
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": job_spec},
        }
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": f"gleaner-{_k8s_name(job.name, limit=52 - len('gleaner-'))}",
            "labels": _labels(job),
            "annotations": {"gleaner/job": job.name},
        },
        "spec": spec,
    }


def _secret_env(key: str) -> dict[str, Any]:
    reference: dict[str, Any] = {"name": SECRET, "key": key}
    if key == "PGPASSWORD":
        reference["optional"] = True  # a catalog may authenticate otherwise (certificates, a trusted network)
    return {"name": key, "valueFrom": {"secretKeyRef": reference}}


EXPORT_FORMATS: Final[dict[str, Callable[[_Plan], Export]]] = {"cron": _cron, "systemd": _systemd, "k8s": _k8s}
