"""The emulation's wire without I/O (specs/wire.md, "Frames" and "The session"):
frames, the handshake between two Sessions wired by hand, every fault and
its code, keepalive timing on a fake clock, the worked handshake vector, and
hypothesis fuzzing of the reader and the session with arbitrary bytes cut
at arbitrary places."""
import hashlib
import hmac
import json
import struct
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import DecodeError, EncodeError, ErrorCode, QStackError
from qstack.core.messages import MAX_MESSAGE_BYTES, decode, encode
from qstack.emu.wire import (MAX_FRAME_BYTES, TRANSITIONS, Challenge, ErrorFrame, FrameReader,
                             Goodbye, Hello, Keepalive, Phase, Proof, Session, SessionClosed,
                             Welcome, encode_frame)
from qstack.physical.messages import StationCancel, StationEntangle

SECRET = b"s" * 32
APP = StationCancel(node="alice", peer="bob", key=b"k")
APP2 = StationEntangle(request=3, node="alice", peer="bob", key=b"", deadline_ns=1,
                       param=0.5, start_ns=0)
VECTOR = Path(__file__).resolve().parents[1] / "specs" / "vectors" / "emu" / "worked_handshake.json"


def pair(client_secret=SECRET, server_secret=SECRET, client_versions=(1,), server_versions=(1,),
         **kw):
    client = Session("client", "alice", "node", client_secret, client_versions,
                     nonce=b"\x01" * 32, **kw)
    server = Session("server", "phys", "physics", server_secret, server_versions,
                     nonce=b"\x02" * 32, **kw)
    return client, server


def shuttle(a: Session, b: Session, first: bytes = b"") -> None:
    """Carry bytes between two sessions until neither has anything to say.
    A SessionClosed is the receiver's business: the test reads its state."""
    pending = [(b, first)] if first else []
    pending.append((b, a.data_to_send()))
    while pending:
        dst, data = pending.pop(0)
        if not data or dst.closed:
            continue
        try:
            dst.receive_data(data)
        except SessionClosed:
            pass
        src = dst
        other = a if dst is b else b
        pending.append((other, src.data_to_send()))


def handshake(client: Session, server: Session) -> None:
    shuttle(client, server, b"".join(client.initiate()))


def frame_of(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def closed_with(session: Session, data: bytes) -> SessionClosed:
    with pytest.raises(SessionClosed) as info:
        session.receive_data(data)
    assert session.closed and info.value.code == session.close_code
    return info.value


def told(session: Session) -> ErrorFrame:
    """The ErrorFrame a closed session queued for its peer (and nothing after it)."""
    reader = FrameReader()
    reader.feed(session.data_to_send())
    msg = reader.next()
    assert isinstance(msg, ErrorFrame) and reader.next() is None
    return msg


# ---------------------------------------------------------------- frames

def test_a_frame_is_a_big_endian_length_then_the_message():
    frame = encode_frame(APP)
    assert frame[:4] == len(encode(APP)).to_bytes(4, "big") and frame[4:] == encode(APP)
    assert MAX_FRAME_BYTES == MAX_MESSAGE_BYTES == 1 << 20


def test_reader_gives_whole_messages_only():
    stream = encode_frame(APP) + encode_frame(APP2)
    reader = FrameReader()
    reader.feed(stream[:5])
    assert reader.next() is None
    reader.feed(stream[5:-1])
    assert reader.next() == APP and reader.next() is None and reader.buffered == len(
        encode_frame(APP2)) - 1
    reader.feed(stream[-1:])
    assert reader.next() == APP2 and reader.next() is None and reader.buffered == 0


def test_an_oversized_length_is_refused_before_its_body():
    reader = FrameReader()
    reader.feed(struct.pack(">I", MAX_FRAME_BYTES + 1))
    with pytest.raises(DecodeError) as info:
        reader.next()
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE
    reader.feed(encode_frame(APP))           # unusable afterwards: same error again
    with pytest.raises(DecodeError):
        reader.next()
    # the largest allowed length is waited for, not refused
    ok = FrameReader()
    ok.feed(struct.pack(">I", MAX_FRAME_BYTES))
    assert ok.next() is None


def test_an_oversized_message_is_not_framed():
    with pytest.raises(EncodeError) as info:
        encode_frame(_huge())
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def _huge():
    # a message over 1 MiB: a test-only class with a large bytes field
    from dataclasses import dataclass, field

    from qstack.core.messages import Message, limits, message

    @message("test.big", 0xFFE0)
    @dataclass(frozen=True, slots=True)
    class Big(Message):
        blob: bytes = field(metadata=limits(max_len=MAX_MESSAGE_BYTES))

    return Big(b"\0" * MAX_MESSAGE_BYTES)


@pytest.mark.parametrize("body, code", [
    (b"\xc1", ErrorCode.MALFORMED),                                  # not msgpack
    (b"", ErrorCode.MALFORMED),                                      # empty frame
    (msgpack.packb([0x061F, 1]), ErrorCode.UNKNOWN_TYPE),            # free code in the block
    (msgpack.packb([0x0604, 9]), ErrorCode.UNSUPPORTED_VERSION),     # Keepalive v9
    (msgpack.packb([0x0606, 1, "x", ""]), ErrorCode.BAD_FIELD),      # ErrorFrame code a str
    (msgpack.packb([0x0606, 1, 70000, ""]), ErrorCode.OUT_OF_RANGE),
    (msgpack.packb([0x0600, 1, [1], "a", "robot", b"\0" * 32]), ErrorCode.OUT_OF_RANGE),
    (msgpack.packb([0x0600, 1, [1], "a", "node", b"\0" * 31]), ErrorCode.OUT_OF_RANGE),
])
def test_reader_gives_the_decoders_code(body, code):
    reader = FrameReader()
    reader.feed(frame_of(body))
    with pytest.raises(DecodeError) as info:
        reader.next()
    assert info.value.code == code
    assert reader.failed is info.value


# ---------------------------------------------------------------- the handshake

def test_handshake_establishes_both_sides_with_the_highest_common_version():
    client, server = pair(client_versions=(1, 2, 3), server_versions=(4, 3, 2))
    handshake(client, server)
    assert client.established and server.established
    assert client.version == server.version == 3
    assert (client.peer_name, client.peer_kind) == ("phys", "physics")
    assert (server.peer_name, server.peer_kind) == ("alice", "node")
    server_in = server.receive_data(client.send(APP) + client.send(APP2))
    assert server_in == [APP, APP2]
    assert client.receive_data(server.send(APP2)) == [APP2]


def test_the_handshake_walks_the_transition_table():
    client, server = pair()
    assert (client.phase, server.phase) == (Phase.IDLE, Phase.AWAIT_HELLO)
    server.receive_data(client.initiate()[0])
    assert (client.phase, server.phase) == (Phase.HELLO_SENT, Phase.CHALLENGE_SENT)
    client.receive_data(server.data_to_send())
    assert client.phase is Phase.PROOF_SENT
    server.receive_data(client.data_to_send())
    assert server.phase is Phase.ESTABLISHED and not client.established
    client.receive_data(server.data_to_send())
    assert client.phase is Phase.ESTABLISHED
    assert all(b is Phase.CLOSED for a, cause, b in TRANSITIONS.rows()
               if cause in ("fault", "close", "Goodbye", "ErrorFrame"))


def test_a_server_initiates_nothing():
    _, server = pair()
    assert server.initiate() == [] and server.phase is Phase.AWAIT_HELLO


def test_worked_handshake_vector():
    """specs/vectors/emu/worked_handshake.json: the proofs recomputed from the
    layout the spec gives (written out here, not the code's transcript
    function), and every frame reproduced by two Sessions."""
    v = json.loads(VECTOR.read_text())
    secret = bytes.fromhex(v["secret"])
    c, s = v["client"], v["server"]

    def text(x):
        raw = x.encode()
        return len(raw).to_bytes(2, "big") + raw

    def transcript(role):
        return (b"qstack emu session proof\x00" + role + v["version"].to_bytes(2, "big")
                + bytes([len(c["versions"])]) + b"".join(x.to_bytes(2, "big") for x in c["versions"])
                + bytes.fromhex(c["nonce"]) + bytes.fromhex(s["nonce"])
                + text(c["name"]) + text(c["kind"]) + text(s["name"]) + text(s["kind"]))

    for role, key in ((b"C", "client"), (b"S", "server")):
        assert transcript(role).hex() == v[f"{key}_transcript"]
        assert hmac.new(secret, transcript(role), hashlib.sha256).hexdigest() == v[f"{key}_proof"]
    client = Session("client", c["name"], c["kind"], secret, tuple(c["versions"]),
                     nonce=bytes.fromhex(c["nonce"]))
    server = Session("server", s["name"], s["kind"], secret, tuple(s["versions"]),
                     nonce=bytes.fromhex(s["nonce"]))
    frames = v["frames"]
    hello = client.initiate()[0]
    assert hello.hex() == frames["hello"]
    server.receive_data(hello)
    challenge = server.data_to_send()
    assert challenge.hex() == frames["challenge"]
    client.receive_data(challenge)
    proof = client.data_to_send()
    assert proof.hex() == frames["proof"] and proof[-32:].hex() == v["client_proof"]
    server.receive_data(proof)
    welcome = server.data_to_send()
    assert welcome.hex() == frames["welcome"] and welcome[-32:].hex() == v["server_proof"]
    client.receive_data(welcome)
    assert client.established and server.established and client.version == v["version"]


# ---------------------------------------------------------------- faults

def test_a_client_without_the_secret_is_refused():
    client, server = pair(client_secret=b"not the secret")
    handshake(client, server)
    assert server.closed and server.close_code == ErrorCode.EMU_AUTH_FAILED
    assert "alice" in server.close_detail
    assert client.closed and client.close_code == ErrorCode.EMU_AUTH_FAILED


def test_a_server_without_the_secret_is_refused_by_the_client():
    """A squatter that accepts the client's proof blindly and answers with a
    Welcome it cannot compute (it does not know the secret)."""
    client, _ = pair()
    client.initiate()
    client.receive_data(encode_frame(Challenge(1, "fake", "physics", b"\x03" * 32)))
    assert isinstance(decode(client.data_to_send()[4:]), Proof)
    err = closed_with(client, encode_frame(Welcome(b"\x00" * 32)))
    assert err.code == ErrorCode.EMU_AUTH_FAILED
    assert told(client).code == ErrorCode.EMU_AUTH_FAILED


def test_a_reflected_nonce_is_refused():
    client, _ = pair()
    client.initiate()
    closed_with(client, encode_frame(Challenge(1, "echo", "node", b"\x01" * 32)))
    assert client.close_code == ErrorCode.EMU_AUTH_FAILED


def test_a_replayed_proof_does_not_open_a_new_session():
    """A client proof recorded from one session fails in another: the server's
    nonce is fresh each time."""
    client, server = pair()
    server.receive_data(client.initiate()[0])
    client.receive_data(server.data_to_send())
    recorded = client.data_to_send()
    hello = encode_frame(Hello((1,), "alice", "node", b"\x01" * 32))
    other = Session("server", "phys", "physics", SECRET)          # a fresh nonce
    other.receive_data(hello)
    closed_with(other, recorded)
    assert other.close_code == ErrorCode.EMU_AUTH_FAILED


def test_no_common_version_is_refused_by_the_server():
    client, server = pair(client_versions=(2, 3), server_versions=(1,))
    handshake(client, server)
    assert server.close_code == client.close_code == ErrorCode.UNSUPPORTED_VERSION
    assert not server.established


def test_a_version_the_client_did_not_offer_is_refused_by_the_client():
    client, _ = pair(client_versions=(1,))
    client.initiate()
    closed_with(client, encode_frame(Challenge(2, "phys", "physics", b"\x02" * 32)))
    assert client.close_code == ErrorCode.UNSUPPORTED_VERSION
    assert told(client).code == ErrorCode.UNSUPPORTED_VERSION


def test_an_application_message_before_the_handshake_is_refused():
    _, server = pair()
    closed_with(server, encode_frame(APP))
    assert server.close_code == ErrorCode.EMU_HANDSHAKE and told(server).code == 602
    client, _ = pair()
    client.initiate()
    closed_with(client, encode_frame(APP))
    assert client.close_code == ErrorCode.EMU_HANDSHAKE


@pytest.mark.parametrize("extra", [
    Hello((1,), "alice", "node", b"\x01" * 32),      # duplicate Hello
    Proof(b"\x00" * 32),                              # a Proof after establishment
    Challenge(1, "x", "node", b"\x05" * 32),          # a client's message at a client
    Welcome(b"\x00" * 32),
])
def test_a_session_message_out_of_place_is_refused(extra):
    client, server = pair()
    handshake(client, server)
    closed_with(server, encode_frame(extra))
    assert server.close_code == ErrorCode.EMU_HANDSHAKE


def test_a_duplicate_hello_during_the_handshake_is_refused():
    client, server = pair()
    hello = client.initiate()[0]
    server.receive_data(hello)
    closed_with(server, hello)
    assert server.close_code == ErrorCode.EMU_HANDSHAKE


def test_keepalive_before_establishment_is_refused():
    _, server = pair()
    closed_with(server, encode_frame(Keepalive()))
    assert server.close_code == ErrorCode.EMU_HANDSHAKE


@pytest.mark.parametrize("data, code", [
    (struct.pack(">I", MAX_FRAME_BYTES + 1), ErrorCode.FRAME_TOO_LARGE),
    (frame_of(b"\xc1\xc1"), ErrorCode.MALFORMED),
    (frame_of(msgpack.packb([0x061F, 1])), ErrorCode.UNKNOWN_TYPE),
    (frame_of(msgpack.packb("not an array")), ErrorCode.MALFORMED),
])
def test_a_bad_frame_closes_with_its_code_and_tells_the_peer(data, code):
    client, server = pair()
    handshake(client, server)
    before = server.receive_data(client.send(APP))
    err = closed_with(server, client.send(APP2) + data + client.send(APP))
    assert before == [APP] and err.messages == [APP2]     # what came before the fault
    assert server.close_code == code and told(server).code == code
    # and the other side hears it
    err = closed_with(client, encode_frame(ErrorFrame(int(code), "x")))
    assert err.code == code


def test_a_truncated_frame_then_the_end_of_the_stream():
    client, server = pair()
    handshake(client, server)
    frame = client.send(APP)
    server.receive_data(frame[:-2])
    closed_with(server, b"")
    assert server.close_code == ErrorCode.MALFORMED and server.data_to_send() == b""


def test_the_end_of_the_stream_without_goodbye_is_a_peer_gone():
    client, server = pair()
    handshake(client, server)
    closed_with(server, b"")
    assert server.close_code == ErrorCode.EMU_PEER_GONE


def test_goodbye_delivers_what_came_before_then_closes_cleanly():
    client, server = pair()
    handshake(client, server)
    data = client.send(APP)
    client.close()
    assert client.close_code == ErrorCode.EMU_CLOSED
    assert server.receive_data(data + client.data_to_send()) == [APP]
    assert server.closed and server.close_code == ErrorCode.EMU_CLOSED
    with pytest.raises(SessionClosed) as info:
        server.receive_data(b"more")
    assert info.value.code == ErrorCode.EMU_CLOSED
    with pytest.raises(SessionClosed):
        client.send(APP)


def test_close_with_a_code_sends_an_error_frame():
    client, server = pair()
    handshake(client, server)
    client.close(ErrorCode.INTERNAL_ERROR, "bug")
    assert told(client) == ErrorFrame(9, "bug")
    client.close()                                    # idempotent: nothing more
    assert client.data_to_send() == b"" and client.close_code == ErrorCode.INTERNAL_ERROR


def test_an_unknown_error_code_from_the_peer():
    client, server = pair()
    handshake(client, server)
    err = closed_with(server, encode_frame(ErrorFrame(65000, "from the future")))
    assert err.code == ErrorCode.EMU_PEER_GONE and "65000" in err.detail


def test_send_before_the_handshake_is_not_ready():
    client, _ = pair()
    with pytest.raises(QStackError) as info:
        client.send(APP)
    assert info.value.code == ErrorCode.EMU_NOT_READY
    client.initiate()
    with pytest.raises(QStackError) as info:
        client.send(APP)
    assert info.value.code == ErrorCode.EMU_NOT_READY


def test_session_messages_are_not_application_messages():
    client, server = pair()
    handshake(client, server)
    with pytest.raises(QStackError) as info:
        client.send(Keepalive())
    assert info.value.code == ErrorCode.BAD_FIELD


@pytest.mark.parametrize("kwargs, code", [
    ({"role": "peer"}, ErrorCode.OUT_OF_RANGE),
    ({"name": ""}, ErrorCode.OUT_OF_RANGE),
    ({"name": "x" * 65}, ErrorCode.OUT_OF_RANGE),
    ({"kind": "robot"}, ErrorCode.OUT_OF_RANGE),
    ({"secret": "text"}, ErrorCode.BAD_FIELD),
    ({"secret": b""}, ErrorCode.OUT_OF_RANGE),
    ({"versions": ()}, ErrorCode.OUT_OF_RANGE),
    ({"versions": (0,)}, ErrorCode.OUT_OF_RANGE),
    ({"keepalive_s": 0.0}, ErrorCode.OUT_OF_RANGE),
    ({"dead_after_s": 0.1}, ErrorCode.OUT_OF_RANGE),      # shorter than the keepalive
    ({"nonce": b"short"}, ErrorCode.OUT_OF_RANGE),
])
def test_bad_session_arguments_have_codes(kwargs, code):
    args = {"role": "client", "name": "a", "kind": "node", "secret": SECRET}
    args.update(kwargs)
    with pytest.raises(QStackError) as info:
        Session(args.pop("role"), args.pop("name"), args.pop("kind"), args.pop("secret"), **args)
    assert info.value.code == code


# ---------------------------------------------------------------- keepalive, fake clock

def test_keepalive_is_sent_when_idle_and_silence_kills():
    client, server = pair()
    handshake(client, server)
    client.tick(0.0)
    server.tick(0.0)
    client.tick(0.49)
    assert client.data_to_send() == b""
    client.tick(0.5)                                   # keepalive_s = 0.5 s of nothing sent
    ka = client.data_to_send()
    assert decode(ka[4:]) == Keepalive()
    assert server.receive_data(ka, now_s=0.5) == []
    server.tick(2.5)                                   # exactly dead_after_s since: not yet
    assert not server.closed and decode(server.data_to_send()[4:]) == Keepalive()
    server.tick(2.51)
    assert server.closed and server.close_code == ErrorCode.EMU_PEER_GONE
    assert told(server).code == ErrorCode.EMU_PEER_GONE


def test_sending_postpones_the_keepalive():
    client, server = pair()
    handshake(client, server)
    client.tick(0.0)
    client.send(APP)
    client.tick(0.4)                                   # the send counts as at this tick
    client.tick(0.8)
    assert client.data_to_send() == b""
    client.tick(0.9)
    assert decode(client.data_to_send()[4:]) == Keepalive()


def test_arrivals_without_a_time_count_at_the_next_tick():
    client, server = pair()
    handshake(client, server)
    server.tick(0.0)
    server.tick(1.9)
    server.receive_data(client.send(APP))
    server.tick(3.0)                                   # stamped 3.0 by this tick
    server.tick(4.9)
    assert not server.closed
    server.tick(5.01)
    assert server.close_code == ErrorCode.EMU_PEER_GONE


def test_a_silent_peer_during_the_handshake_is_dead_too():
    _, server = pair()
    server.tick(10.0)
    server.tick(12.01)
    assert server.close_code == ErrorCode.EMU_PEER_GONE


def test_a_reader_that_paused_itself_does_not_blame_the_peer():
    client, server = pair()
    handshake(client, server)
    server.tick(0.0)
    server.tick(5.0, check_peer=False)
    assert server.established
    server.tick(7.0)                      # a whole dead_after_s after reading resumed
    assert server.established
    server.tick(7.01)
    assert server.close_code == ErrorCode.EMU_PEER_GONE


# ---------------------------------------------------------------- fuzzing

def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return [p for p in pieces if p]


def _read_all(chunks: list[bytes]):
    reader, got = FrameReader(), []
    for chunk in chunks:
        reader.feed(chunk)
        try:
            while (msg := reader.next()) is not None:
                got.append(msg)
        except DecodeError as exc:
            return got, exc.code
    return got, None


@settings(max_examples=150)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_fuzz_frame_reader_arbitrary_bytes(data, cuts):
    whole = _read_all([data])
    assert _read_all(_cut(data, cuts)) == whole


_PIECES = st.one_of(
    st.sampled_from([APP, APP2, Keepalive()]).map(encode_frame),
    st.binary(max_size=24),
    st.binary(max_size=24).map(frame_of),
    st.integers(0, 0xFFFFFFFF).map(lambda n: struct.pack(">I", n)),
    st.just(encode_frame(Goodbye("bye"))),
    st.just(encode_frame(Hello((1,), "x", "app", b"\x09" * 32))),
)


def _established_stream() -> bytes:
    """What a client with fixed nonces writes to complete its handshake with
    the server of pair() (whose nonce is fixed too)."""
    client, server = pair()
    hello = client.initiate()[0]
    server.receive_data(hello)
    client.receive_data(server.data_to_send())
    return hello + client.data_to_send()


HANDSHAKE = _established_stream()


def _serve(chunks: list[bytes]):
    _, server = pair()
    got, out = [], b""
    for chunk in chunks:
        try:
            got += server.receive_data(chunk)
        except SessionClosed as exc:
            got += exc.messages
            break
        finally:
            out += server.data_to_send()
    return got, server.phase, server.close_code, server.close_detail, out


@settings(max_examples=150)
@given(pieces=st.lists(_PIECES, max_size=8), cuts=st.lists(st.integers(0, 2000), max_size=8),
       with_handshake=st.booleans(), eof=st.booleans())
def test_fuzz_session_arbitrary_bytes_and_chunking(pieces, cuts, with_handshake, eof):
    """A server session fed any bytes, cut anywhere, raises nothing but
    SessionClosed, and how the bytes were cut changes nothing: the messages
    delivered, the final state and code, and every byte it answered."""
    stream = (HANDSHAKE if with_handshake else b"") + b"".join(pieces)
    tail = [b""] if eof else []
    whole = _serve(([stream] if stream else []) + tail)
    assert _serve(_cut(stream, cuts) + tail) == whole
    got, phase, code, _, _ = whole
    if code is None:
        assert phase in (Phase.ESTABLISHED, Phase.AWAIT_HELLO, Phase.CHALLENGE_SENT)
    assert all(m in (APP, APP2) for m in got)
