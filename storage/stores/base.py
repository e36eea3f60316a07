"""The object store protocol every backend implements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

__all__ = ["ObjectStore"]


@runtime_checkable
class ObjectStore(Protocol):
    """A flat key → bytes store. Keys use '/' separators; objects are immutable once written."""

    url: str
    remote: bool  # True when calls wait on the network: ingest then keeps more of them in flight

    def put(self, key: str, data: bytes, content_type: str | None = None, *, durable: bool = True) -> None:
        """Write an object durably; when this returns, a crash cannot lose it. `durable=False` (batch writers):
        the object is complete for every reader now, and durable once `sync()` has returned."""

    def sync(self) -> None:
        """Make every object written so far with `durable=False`, by any process, durable (group commit)."""

    def get(self, key: str) -> bytes:
        """Read a whole object; raises KeyError when it does not exist."""

    def exists(self, key: str, size: int | None = None) -> bool:
        """True when the object exists, is not empty and (when given) has `size` bytes: an empty or short file
        is what a power cut can leave of a `durable=False` write whose `sync()` never came, so writers must
        not take it for the object."""

    def iter(self, prefix: str = "") -> Iterator[str]:
        """Yield every key that starts with `prefix`, in no particular order."""

    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""

    def url_for(self, key: str) -> str:
        """A URL a person or another tool can use to find the object (file:// or s3://)."""
