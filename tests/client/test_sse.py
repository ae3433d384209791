"""The SSE decoder gives the same messages however the bytes are split."""

from __future__ import annotations

import random

import pytest

from shoal.client.sse import SseComment, SseDecoder, SseMessage

STREAM = (
    ": watching from revision 5\n\n"
    'id: 5\nevent: put\ndata: {"k":"é"}\n\n'
    "id: 6\r\nevent: delete\r\ndata: a\r\ndata: b\r\n\r\n"
    "event: error\rdata: x\r\r"
).encode()

EXPECTED = [
    SseComment("watching from revision 5"),
    SseMessage(event="put", data='{"k":"é"}', id="5"),
    SseMessage(event="delete", data="a\nb", id="6"),
    SseMessage(event="error", data="x", id="6"),
]


def decode(chunks: list[bytes]) -> list[SseMessage | SseComment]:
    decoder = SseDecoder()
    return [item for chunk in chunks for item in decoder.feed(chunk)]


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("seed", range(200))
def test_random_split_points(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 12)))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)], strict=True)]
    assert decode(chunks) == EXPECTED


def test_every_single_split_point() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_message_without_data_is_not_dispatched_and_unfinished_message_waits() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: put\n\n") == []
    assert decoder.feed(b"data: 1\n") == []
    assert decoder.feed(b"\n") == [SseMessage(event="message", data="1", id=None)]
