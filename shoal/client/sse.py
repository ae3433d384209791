"""An incremental decoder of Server-Sent Events (the WHATWG event-stream format).

Bytes go in as they arrive, split anywhere (even inside a UTF-8 character or between
the CR and LF of a line end); complete messages come out. Comment lines (`: text`) are
reported too, because the watch stream says on one where it starts. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseComment", "SseDecoder", "SseMessage"]


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    id: str | None


@dataclass(frozen=True, slots=True)
class SseComment:
    text: str


class SseDecoder:
    """Feed bytes with `feed`; each call returns the items completed by those bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._pending_cr = False  # the previous chunk ended in CR: a following LF is its pair
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SseMessage | SseComment]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = chunk.endswith(b"\r")
        self._buffer += chunk
        out: list[SseMessage | SseComment] = []
        lines = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        self._buffer = lines.pop()  # the unfinished last line (b"" after a line end)
        for raw in lines:
            item = self._line(raw.decode("utf-8", "replace"))
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: str) -> SseMessage | SseComment | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return SseComment(line[1:].removeprefix(" "))
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # `retry` and unknown fields are ignored, as the format says

    def _dispatch(self) -> SseMessage | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return SseMessage(event=event, data="\n".join(data), id=self._id)
