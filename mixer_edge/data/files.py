"""ImageFiles: a folder of images too large to hold decoded, read one image at a time.

The device runtime owns streaming (runtime/edge_bench: ImageFiles, streams, the threshold), so a
device reads and streams a folder exactly as training does; this module adapts it to the host's
BadInput. An image folder is decoded into memory when that is small and streamed otherwise
(docs/data.md, Streaming).
"""
from __future__ import annotations

from ..errors import BadInput
from ..runtime import edge_bench as eb

STREAM_ENV = eb.STREAM_ENV   # overrides edge_bench.STREAM_ABOVE_MB (torchrun children, tests)
PROGRESS_ABOVE = 500   # images; fewer are read in well under a second, a bar would only flicker


class ImageFiles(eb.ImageFiles):
    """The runtime's ImageFiles raising BadInput: x[i] is uint8 (H, W, C), as the runtime reads it."""
    error = BadInput
