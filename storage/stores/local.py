"""A local folder store with atomic, durable writes (temp file, fsync, rename, fsync dir).

Batch writers (download workers) skip the two fsyncs per object and let the catalog writer call `sync()`
(one syncfs) before it records the batch: the same guarantee, object durable before its catalog row.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from storage.stores import register_store

__all__ = ["LocalStore"]


def _load_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """libc's syncfs(2) (Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    return function


_syncfs = _load_syncfs()


class LocalStore:
    """Objects are files below `root`; a key maps to the same relative path."""

    remote = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)
        self._made: set[Path] = set()  # folders known to exist: a mkdir per write costs more than the write

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"invalid object key: {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes, content_type: str | None = None, *, durable: bool = True) -> None:
        path = self._path(key)
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        except FileNotFoundError:  # the folder was removed behind our back
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        if durable:
            _fsync_dir(path.parent)

    def sync(self) -> None:
        """One syncfs(2) of the store's filesystem instead of two fsyncs per object (Linux); else sync(2)."""
        if _syncfs is None:
            os.sync()
            return
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs(fd) != 0:
                error = ctypes.get_errno()
                if error not in (errno.ENOSYS, errno.EINVAL):  # a write-back error: the batch must not be recorded
                    raise OSError(error, f"syncfs of {self.root} failed: {os.strerror(error)}")
                os.sync()
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(key) from None

    def exists(self, key: str, size: int | None = None) -> bool:
        """True for a non-empty file of `size` bytes when given (see ObjectStore.exists)."""
        try:
            info = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(info.st_mode) and info.st_size > 0 and (size is None or info.st_size == size)

    def iter(self, prefix: str = "") -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if name.startswith(".tmp-"):
                    continue  # an interrupted write, never a visible object
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    yield key

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable; some filesystems refuse to open directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@register_store("file")
def _open_local(url: str, options: dict[str, Any]) -> LocalStore:
    parsed = urlparse(url)
    path = unquote(parsed.path) if parsed.scheme == "file" else url
    return LocalStore(path)
