"""PNG completeness: the image data must inflate to exactly the size the header declares.

Pillow fills missing rows with black when a PNG's zlib stream ends cleanly but early, so a file cut at a
chunk boundary (or crafted that way) would pass a plain decode. Counting the inflated bytes catches it.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["png_data_complete"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _raw_size(width: int, height: int, bits_per_pixel: int) -> int:
    if width == 0 or height == 0:
        return 0
    return height * (1 + (width * bits_per_pixel + 7) // 8)


def expected_size(width: int, height: int, bit_depth: int, colour_type: int, interlace: int) -> int:
    bits_per_pixel = bit_depth * _CHANNELS[colour_type]
    if not interlace:
        return _raw_size(width, height, bits_per_pixel)
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        pass_width = max(0, (width - x0 + dx - 1) // dx)
        pass_height = max(0, (height - y0 + dy - 1) // dy)
        total += _raw_size(pass_width, pass_height, bits_per_pixel)
    return total


def png_data_complete(data: bytes) -> bool | None:
    """True when the IDAT stream inflates to the declared size; None when `data` is not a parsable PNG."""
    if not data.startswith(_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        return None
    width, height, bit_depth, colour_type, _compression, _filter, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if colour_type not in _CHANNELS:
        return None
    want = expected_size(width, height, bit_depth, colour_type, interlace)
    inflater = zlib.decompressobj()
    got = 0
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunk = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"IDAT":
            try:
                # inflate in bounded pieces: never hold more than 1 MiB of pixels at a time
                piece = inflater.decompress(chunk, 1 << 20)
                got += len(piece)
                while inflater.unconsumed_tail and got <= want:
                    piece = inflater.decompress(inflater.unconsumed_tail, 1 << 20)
                    got += len(piece)
            except zlib.error:
                return False
            if got > want:
                return True  # extra data is tolerated by decoders; only missing rows matter
        elif kind == b"IEND":
            break
    return got >= want
