"""A real pseudo-terminal for tests of what commands draw on a terminal (and only there)."""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TextIO

# CSI sequences (cursor moves, colours, erase line) and the bare carriage returns a bar
# redraws with: what is left is the text a person reads.
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\r")


def plain(text: str) -> str:
    return _CONTROL.sub("", text)


class NotATerminal(io.StringIO):
    """A pipe or a file as a command sees it: ``isatty()`` is False (StringIO's own)."""


@dataclass
class Terminal:
    """What was written to the terminal's slave side, read from its master side."""

    stream: TextIO
    chunks: list[bytes] = field(default_factory=list)

    @property
    def text(self) -> str:
        return plain(b"".join(self.chunks).decode("utf-8", errors="replace"))


@contextmanager
def pseudo_terminal() -> Iterator[Terminal]:
    """A pty whose slave end is a text stream with ``isatty()`` True; everything written to
    it is collected (by a reader thread, so a long output never fills the pty's buffer)."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8", buffering=1)
    assert stream.isatty()
    terminal = Terminal(stream)

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed and drained
                return
            if not chunk:
                return
            terminal.chunks.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield terminal
    finally:
        stream.close()
        reader.join(timeout=10)
        os.close(master)
