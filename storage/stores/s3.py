"""An S3 store (boto3) for AWS S3 and S3-compatible servers: SeaweedFS, MinIO, R2, Ceph...

Credentials come from the standard AWS chain (environment, shared files, instance roles); the
endpoint from the workspace config or `AWS_ENDPOINT_URL_S3` (boto3 reads that itself).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlparse

from storage.errors import StoreError
from storage.stores import register_store

__all__ = ["S3Store", "ensure_bucket"]

DEFAULT_POOL = 32
OUTAGE_S = 60.0  # how long calls wait out a server that stopped answering (a restart) before they fail
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling"}

T = TypeVar("T")


class S3Store:
    """Objects live under `s3://bucket/prefix/`; keys are appended to the prefix."""

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        max_pool_connections: int = DEFAULT_POOL,
        max_attempts: int = 8,
        profile: str | None = None,
        outage_s: float = OUTAGE_S,
    ) -> None:
        import boto3
        from botocore.config import Config

        if not bucket:
            raise StoreError("an S3 store URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self._outage = _Outage(outage_s)
        config = Config(
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            max_pool_connections=max_pool_connections,
            s3={"addressing_style": addressing_style},
            connect_timeout=10,
            read_timeout=60,
            # S3-compatible servers differ in their support of the newer default checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
        self.client = session.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=config,
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes, content_type: str | None = None, *, durable: bool = True) -> None:
        """S3 stores an object durably before it answers a PUT: `durable` changes nothing."""
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._call(lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra))
        except Exception as exc:  # botocore raises many unrelated types
            raise StoreError(f"S3 put {self.url}/{key} failed: {exc}") from exc

    def sync(self) -> None:
        """Nothing to do: every PUT was durable when it returned."""

    def get(self, key: str) -> bytes:
        try:
            body = self._call(lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read())
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        except Exception as exc:
            if _is_not_found(exc):
                raise KeyError(key) from None
            raise StoreError(f"S3 get {self.url}/{key} failed: {exc}") from exc
        return bytes(body)

    def exists(self, key: str, size: int | None = None) -> bool:
        """True for a non-empty object of `size` bytes when given (see ObjectStore.exists)."""
        try:
            head = self._call(lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except Exception as exc:
            if _is_not_found(exc):
                return False
            raise StoreError(f"S3 head {self.url}/{key} failed: {exc}") from exc
        length = int(head.get("ContentLength", 1))
        return length > 0 and (size is None or length == size)

    def iter(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        base = f"{self.prefix}/" if self.prefix else ""
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            for item in page.get("Contents", []):
                yield item["Key"][len(base) :]

    def delete(self, key: str) -> None:
        try:
            self._call(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._key(key)))
        except Exception as exc:
            if not _is_not_found(exc):
                raise StoreError(f"S3 delete {self.url}/{key} failed: {exc}") from exc

    def _call(self, operation: Callable[[], T]) -> T:
        """Run one idempotent S3 call (objects are immutable and content-addressed: a PUT sent again writes the
        same bytes), waiting out an outage of the server for up to `outage_s`.

        Why: botocore's own retries back off from 50 ms and give up within about 6 s (8 attempts), and its retry
        quota runs dry after a few dozen retries per client, so a restart of SeaweedFS or MinIO taking a few
        seconds failed every image in flight ("Could not connect to the endpoint URL", "InternalError ... reached
        max retries"). Only transient failures are waited out (connection refused, reset or timed out, 5xx);
        the outage is shared by the store's calls, so once it has lasted `outage_s` each call fails at its next
        failure instead of every call waiting the whole budget again."""
        attempt = 0
        while True:
            try:
                result = operation()
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                wait = self._outage.failed(attempt)
                if wait is None:
                    raise
                time.sleep(wait)
                attempt += 1
                continue
            self._outage.ended()
            return result

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def presigned_url(self, key: str, expires_s: int = 3600) -> str:
        """An HTTP URL that lets a browser fetch the object without credentials for a while."""
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s
            )
        )


class _Outage:
    """When a store's server stopped answering, shared by the calls of one store (threads included)."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.since: float | None = None  # the first failure of the outage in progress
        self.last = 0.0  # the latest failure
        self.lock = threading.Lock()

    def failed(self, attempt: int) -> float | None:
        """Record a transient failure of a call's `attempt` (0-based); the seconds to wait before its next one,
        or None once the outage has lasted the budget (the call fails). Backoff: 0.25 s doubling to 2 s, with
        jitter, never past the budget's end."""
        now = time.monotonic()
        with self.lock:
            if self.since is None or now - self.last > self.budget_s:  # no failure for a while: a new outage
                self.since = now
            self.last = now
            left = self.since + self.budget_s - now
        if left <= 0:
            return None
        return min(left, min(0.25 * 2.0 ** min(attempt, 8), 2.0) * random.uniform(0.5, 1.0))

    def ended(self) -> None:
        if self.since is not None:
            with self.lock:
                self.since = None


def _is_transient(exc: Exception) -> bool:
    """A failure that a later attempt may not meet: no connection, a cut or timed-out one, or a 5xx."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, BotoConnectionError | HTTPClientError):  # refused, reset, connect and read timeouts
        return True
    response = getattr(exc, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status in {500, 502, 503, 504} or str(response.get("Error", {}).get("Code", "")) in _TRANSIENT_CODES


def _is_not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in {"404", "NoSuchKey", "NotFound"} or status == 404


def ensure_bucket(store: S3Store) -> bool:
    """Create the store's bucket when it does not exist; True when it was created."""
    try:
        store.client.head_bucket(Bucket=store.bucket)
        return False
    except Exception as exc:
        if not _is_not_found(exc):
            raise StoreError(f"cannot reach bucket {store.bucket!r}: {exc}") from exc
    store.client.create_bucket(Bucket=store.bucket)
    return True


@register_store("s3")
def _open_s3(url: str, options: dict[str, Any]) -> S3Store:
    parsed = urlparse(url)
    known = {
        "endpoint_url",
        "region",
        "addressing_style",
        "max_pool_connections",
        "max_attempts",
        "profile",
        "outage_s",
    }
    unknown = set(options) - known
    if unknown:
        raise StoreError(f"unknown S3 store options: {', '.join(sorted(unknown))}")
    return S3Store(parsed.netloc, parsed.path, **options)
