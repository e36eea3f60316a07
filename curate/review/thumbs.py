"""Grid thumbnails, made once per image and kept in the object store under `thumbs/<sha[:2]>/<sha>.jpg`.

Keeping them in the store (not a local cache folder) means every reviewer of a shared S3 workspace pays the
decoding cost only once, and the thumbnails travel with the data.

Decoding happens in a bounded pool (`Thumbnails.decoders` at a time, whatever the number of requests in flight),
and every decode goes through storage.images.open_image's decode budget: a grid of 200 cards of large images
(or of bombs stored before the budget existed) costs at most a few decoded images of memory at once.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from storage.images import DEFAULT_MAX_PIXELS, open_image
from storage.keys import image_key
from storage.stores import ObjectStore

__all__ = [
    "BROWSER_FORMATS",
    "DECODERS",
    "THUMB_SIDE",
    "Thumbnails",
    "browser_image",
    "make_thumbnail",
    "thumb_key",
]

T = TypeVar("T")
DECODERS = 2  # images decoded at once by one review server

THUMB_SIDE = 320  # twice the card size: sharp on high-density screens
BROWSER_FORMATS = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
}
PREVIEW_SIDE = 2048  # formats browsers cannot show are converted to PNG up to this size


def thumb_key(sha256: str) -> str:
    """The store key of an image's thumbnail (a pure function of the digest, like image keys)."""
    image_key(sha256, "jpg")  # validates the digest
    return f"thumbs/{sha256[:2]}/{sha256}.jpg"


def make_thumbnail(data: bytes, side: int = THUMB_SIDE, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A JPEG no larger than side x side, upright and on white (storage.images.open_image), drafted for cheap
    decoding."""
    image = open_image(data, size=side, mode="RGB", max_pixels=max_pixels)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82, optimize=True)
    return buffer.getvalue()


def browser_image(data: bytes, ext: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[bytes, str]:
    """The original bytes when browsers can show the format, else a PNG rendering of it."""
    media_type = BROWSER_FORMATS.get(ext.lower())
    if media_type:
        return data, media_type
    image = open_image(data, max_pixels=max_pixels)  # upright, as the browser shows the formats it can read
    image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.convert("RGBA" if "A" in image.getbands() else "RGB").save(buffer, "PNG")
    return buffer.getvalue(), "image/png"


class Thumbnails:
    """Thumbnails from the store, generated on first request; a small in-memory LRU saves store round trips."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        memory_items: int = 2000,
        decoders: int = DECODERS,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.store = store
        self.max_pixels = max_pixels  # the workspace's [ingest] max_pixels: what ingest let in is shown
        self.memory_items = memory_items
        self.decoders = decoders
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[str, threading.Lock] = {}
        self._pool = ThreadPoolExecutor(decoders, thread_name_prefix="review-decode")
        self._running = 0
        self.peak_decodes = 0  # the most decodes that ever ran at once (at most `decoders`)

    def decode(self, function: Callable[..., T], *args: object) -> T:
        """Run a decoding `function(*args)` in the bounded pool and wait for its result (or its exception)."""
        return self._pool.submit(self._counted, function, *args).result()

    def _counted(self, function: Callable[..., T], *args: object) -> T:
        with self._lock:
            self._running += 1
            self.peak_decodes = max(self.peak_decodes, self._running)
        try:
            return function(*args)
        finally:
            with self._lock:
                self._running -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def get(self, sha256: str, ext: str) -> bytes:
        """The thumbnail of an image (sha256 and ext from the catalog row, never from a request path)."""
        cached = self._remember(sha256)
        if cached is not None:
            return cached
        with self._lock:
            making = self._making.setdefault(sha256, threading.Lock())
        with making:  # two requests for the same new image decode it once
            cached = self._remember(sha256)
            if cached is not None:
                return cached
            key = thumb_key(sha256)
            try:
                data = self.store.get(key)
            except KeyError:
                data = self.decode(make_thumbnail, self.store.get(image_key(sha256, ext)), THUMB_SIDE, self.max_pixels)
                self.store.put(key, data, content_type="image/jpeg")
            self._remember(sha256, data)
        with self._lock:
            self._making.pop(sha256, None)
        return data

    def _remember(self, sha256: str, data: bytes | None = None) -> bytes | None:
        with self._lock:
            if data is None:
                found = self._memory.get(sha256)
                if found is not None:
                    self._memory.move_to_end(sha256)
                return found
            self._memory[sha256] = data
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)
            return data
