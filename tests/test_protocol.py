"""The frame codec: round trips and one named error per kind of broken frame."""

from __future__ import annotations

import io
import struct
import tracemalloc

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    BadHeader,
    BadMagic,
    FrameReader,
    FrameTooLarge,
    LengthMismatch,
    LinkUnauthenticated,
    ModelFailed,
    Normalization,
    Request,
    RequestHeader,
    TruncatedFrame,
    UnsupportedVersion,
    WorkerCrashed,
    decode_answer,
    decode_request,
    decode_stream_answer,
    encode_description,
    encode_error,
    encode_probabilities,
    encode_request,
    encode_stream_answer,
    read_request,
)
from protocol.frame import MAX_HEADER_BYTES, PREAMBLE
from protocol.header import MAX_MODEL_BYTES
from protocol.link import (
    CHALLENGE_BYTES,
    challenge,
    parse_secret,
    proof,
    proves,
)

normalizations = st.one_of(
    st.just(Normalization()),
    st.just(Normalization("raw")),
    st.builds(
        lambda m, s: Normalization("mean_std", m, s),
        st.floats(-1000, 1000, allow_nan=False),
        st.floats(0.001, 1000, allow_nan=False),
    ),
)


@st.composite
def requests_(draw: st.DrawFn) -> Request:
    describe = draw(st.booleans())
    height, width, count = (
        draw(st.integers(1, 16)),
        draw(st.integers(1, 16)),
        draw(st.integers(0 if describe else 1, 3)),
    )
    model = draw(st.binary(max_size=256))
    header = RequestHeader(
        height=height,
        width=width,
        image_count=count,
        model_length=len(model),
        model_format=draw(st.sampled_from([None, "graphdef", "tflite"])),
        input_tensor=draw(st.one_of(st.none(), st.text(max_size=20))),
        output_tensor=draw(st.one_of(st.none(), st.text(max_size=20))),
        normalization=draw(normalizations),
        describe=describe,
        solo=draw(st.booleans()),
    )
    pixels = draw(st.binary(min_size=header.pixels_length, max_size=header.pixels_length))
    return Request(header, model, pixels)


def frame_with_header(
    wire: dict, body: bytes = b"", version: int = 1, magic: bytes = b"MNSF"
) -> bytes:
    header = msgpack.packb(wire)
    return PREAMBLE.pack(magic, version, len(header)) + header + body


def valid_wire(**changes: object) -> dict:
    return {**RequestHeader(height=2, width=2, model_length=3).to_wire(), **changes}


@given(requests_())
def test_round_trip(request: Request) -> None:
    assert decode_request(encode_request(request)) == request


@given(st.lists(requests_(), min_size=1, max_size=3), st.integers(1, 64))
def test_stream_of_frames_in_any_chunking(requests: list[Request], chunk: int) -> None:
    stream = b"".join(encode_request(r) for r in requests)
    reader, decoded = FrameReader(), []
    for start in range(0, len(stream), chunk):
        reader.receive_data(stream[start : start + chunk])
        while (request := reader.next_request()) is not None:
            decoded.append(request)
    reader.end_of_input()
    assert decoded == requests


@given(requests_(), st.data())
def test_every_truncation_is_named(request: Request, data: st.DataObject) -> None:
    frame = encode_request(request)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(TruncatedFrame):
        decode_request(frame[:cut])


def test_wrong_magic() -> None:
    with pytest.raises(BadMagic):
        decode_request(frame_with_header(valid_wire(), b"m" * 3 + b"p" * 12, magic=b"GIF8"))
    with pytest.raises(BadMagic):  # detected from the very first bytes, before the preamble
        reader = FrameReader()
        reader.receive_data(b"{")
        reader.next_request()


def test_wrong_version() -> None:
    with pytest.raises(UnsupportedVersion, match="version 2"):
        decode_request(frame_with_header(valid_wire(), b"m" * 3 + b"p" * 12, version=2))


def test_memory_follows_the_bytes_that_arrive_not_the_declared_sizes() -> None:
    """A header alone declaring 48 MB of pixels (as 40 such connections once took the worker
    service from 48 to 1969 MB) holds about a megabyte; the buffer grows as pixels come."""
    height = width = 4000
    head = frame_with_header(
        valid_wire(height=height, width=width, pixels_length=height * width * 3), b"mmm"
    )
    tracemalloc.start()
    try:
        reader = FrameReader()
        reader.receive_data(head)
        assert reader.next_request() is None
        held = tracemalloc.get_traced_memory()[0]
        assert held < 2 << 20, held
        for _ in range(3):  # 3 MB of pixels arrive: the buffer follows, within a doubling
            reader.receive_data(bytes(1 << 20))
            reader.next_request()
        assert tracemalloc.get_traced_memory()[0] < 8 << 20
    finally:
        tracemalloc.stop()


def test_a_frame_read_into_its_buffer_in_small_pieces_keeps_its_pixels() -> None:
    pixels = bytes(range(256)) * (3 * 1024 * 6)  # 4.7 MB: the buffer doubles three times
    frame = encode_request(
        Request(RequestHeader(height=1024, width=1536, model_length=3), b"mmm", pixels)
    )
    stream = io.BytesIO(frame + frame)
    for _ in range(2):
        request = read_request(lambda view: stream.readinto(view[:100_000]))
        assert request.model == b"mmm" and bytes(request.pixels) == pixels


def test_oversized_header_and_model_are_refused_before_buffering() -> None:
    with pytest.raises(FrameTooLarge):
        decode_request(PREAMBLE.pack(b"MNSF", 1, MAX_HEADER_BYTES + 1))
    with pytest.raises(FrameTooLarge, match="model"):
        decode_request(frame_with_header(valid_wire(model_length=MAX_MODEL_BYTES + 1)))
    with pytest.raises(FrameTooLarge, match="pixels"):
        decode_request(
            frame_with_header(valid_wire(height=10_000, width=10_000, pixels_length=300_000_000))
        )


def test_inconsistent_lengths() -> None:
    with pytest.raises(LengthMismatch, match="pixels_length"):
        decode_request(frame_with_header(valid_wire(pixels_length=11), b"m" * 3 + b"p" * 11))
    with pytest.raises(LengthMismatch, match="follow"):
        decode_request(frame_with_header(valid_wire(), b"m" * 3 + b"p" * 12 + b"extra"))
    header = RequestHeader(height=2, width=2, model_length=3)
    with pytest.raises(LengthMismatch):
        encode_request(Request(header, b"mm", b"p" * 12))


@pytest.mark.parametrize(
    "wire, message",
    [
        (valid_wire(height="2"), "height"),
        (valid_wire(channels=4), "RGB8"),
        (valid_wire(model_format="onnx"), "model_format"),
        (valid_wire(normalization={"mode": "mean_std", "mean": 1, "std": 0}), "std"),
        ({"height": 2}, "missing"),
        (valid_wire(image_count=0, pixels_length=0), "only with describe"),
        (valid_wire(describe="yes"), "boolean"),
        (valid_wire(solo=1), "'solo' must be a boolean"),
        ([1, 2, 3], "map"),
    ],
)
def test_bad_header(wire: object, message: str) -> None:
    with pytest.raises(BadHeader, match=message):
        decode_request(frame_with_header(wire, b"m" * 3 + b"p" * 12))


def test_header_that_is_not_msgpack() -> None:
    with pytest.raises(BadHeader, match="msgpack"):
        decode_request(PREAMBLE.pack(b"MNSF", 1, 2) + b"\xc1\xc1")


def test_each_frame_error_has_its_own_code() -> None:
    errors = [
        TruncatedFrame,
        BadMagic,
        UnsupportedVersion,
        FrameTooLarge,
        BadHeader,
        LengthMismatch,
    ]
    assert len({e.code for e in errors}) == len(errors)
    assert all(e.exit_code == 2 for e in errors)


def test_answers_round_trip() -> None:
    rows, description = decode_answer(encode_probabilities([0.25, 0.75]))
    assert (rows.tolist(), description) == ([[0.25, 0.75]], None)
    rows, description = decode_answer(encode_probabilities([[0.5, 0.5], [1, 0]]))
    assert (rows.tolist(), description) == ([[0.5, 0.5], [1.0, 0.0]], None)
    rows, description = decode_answer(encode_description({"format": "tflite"}, [0.25, 0.75]))
    assert (rows.tolist(), description) == ([[0.25, 0.75]], {"format": "tflite"})
    rows, description = decode_stream_answer(encode_stream_answer([[0.25, 0.75]], {"a": 1})[4:])
    assert (rows.tolist(), description) == ([[0.25, 0.75]], {"a": 1})
    with pytest.raises(ModelFailed, match="custom op"):
        decode_answer(encode_error(ModelFailed("custom op")))
    with pytest.raises(WorkerCrashed):
        decode_answer(b"Segmentation fault")
    assert struct.calcsize(">4sHI") == PREAMBLE.size == 10


def test_the_link_proof_holds_for_its_nonce_and_secret_only() -> None:
    secret = parse_secret(b"  a secret of the link, long enough\n")
    nonce, sent = challenge()
    assert len(sent) == CHALLENGE_BYTES
    answer = proof(secret, sent)
    assert proves(secret, nonce, answer)
    assert not proves(b"another secret, just as long", nonce, answer)
    other_nonce, _ = challenge()
    assert not proves(secret, other_nonce, answer)  # a proof seen once is no use again
    with pytest.raises(LinkUnauthenticated, match="greet"):
        proof(secret, b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(10))
    with pytest.raises(ValueError, match="at least 16"):
        parse_secret(b"short\n")
