"""Console output that a closed reader cannot break.

`quotestream demo | tee demo.log` and Ctrl-C: tee dies first, and every later print raises
BrokenPipeError, in the middle of stopping what the command started. Once the reader is
gone, output goes to /dev/null instead and the cleanup carries on.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO


class ReaderlessSafe:
    """A text stream that, on a broken pipe, points its descriptor at /dev/null and goes on."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop_reader()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop_reader()

    def _drop_reader(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)
        # What the dead reader did not take stays buffered: it now goes to /dev/null.
        with contextlib.suppress(BrokenPipeError):
            self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def survive_closed_readers() -> None:
    """Wrap stdout and stderr, once."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, ReaderlessSafe):
            setattr(sys, name, ReaderlessSafe(stream))
