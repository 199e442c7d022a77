"""The emulation's wire over real localhost sockets (specs/wire.md, "Channels"):
the handshake through trio, refusals with their codes while the server goes
on serving others, silent and non-reading peers noticed within the bound,
concurrent senders, back-pressure. Timing tests run on trio's MockClock
(autojump), so they assert the bound in trio's virtual seconds, never wall
time."""
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from qstack.core.errors import ErrorCode, QStackError
from qstack.core.messages import Message, limits, message
from qstack.emu.channel import (MAX_BATCH, ChannelClosed, accept_channel, forward, open_channel,
                                serve_channels)
from qstack.emu.wire import ErrorFrame, FrameReader, Session, encode_frame
from qstack.physical.messages import StationCancel

# real processes, sockets or wall-clock timeouts: `make test` runs these alone, not beside
# the parallel workers that take the rest of the suite
pytestmark = pytest.mark.realtime

SECRET = b"network secret 0123456789abcdef!"
HOST = "127.0.0.1"
FAST = {"keepalive_s": 0.1, "dead_after_s": 0.4}      # tick 0.05 s


@message("test.emu", 0xFFE1)
@dataclass(frozen=True, slots=True)
class Blob(Message):
    """Test-only: who sent it, its sequence number, a payload of any size."""

    sender: int = field(metadata=limits(0, 1000))
    seq: int = field(metadata=limits(0, 1 << 30))
    payload: bytes = field(metadata=limits(max_len=1 << 19))


def run(fn, *, mock=False):
    """Run ``fn`` under trio (MockClock with autojump when ``mock``: virtual
    time jumps to the next timer once every task has waited 5 ms of real
    time with nothing to do, so timeouts cost no real seconds; a jump too
    early only moves time to the next keepalive tick, 0.05 s, far inside
    the 0.4 s a peer may be silent)."""
    clock = trio.testing.MockClock(autojump_threshold=0.005) if mock else None
    return trio.run(fn, clock=clock)


async def echo(channel):
    async for msg in channel:
        await channel.send(msg)


async def start_server(nursery, handler=echo, **kw):
    options = {"name": "server", "kind": "node", "secret": SECRET}
    options.update(kw)
    return await nursery.start(lambda task_status: serve_channels(
        handler, 0, task_status=task_status, **options))


async def raw_client(port, secret=SECRET, versions=(1,)):
    """A hand-driven client: a bare stream and its Session, established."""
    stream = await trio.open_tcp_stream(HOST, port)
    session = Session("client", "raw", "conformance", secret, versions)
    for frame in session.initiate():
        await stream.send_all(frame)
    while not session.established:
        session.receive_data(await stream.receive_some(65536))
        out = session.data_to_send()
        if out:
            await stream.send_all(out)
    return stream, session


class Ends:
    """A server handler that reads until its channel closes, and records the
    code and trio's time of the close."""

    def __init__(self):
        self.codes, self.times, self.closed = [], [], trio.Event()

    async def __call__(self, channel):
        try:
            async for _ in channel:
                pass
        except ChannelClosed as exc:
            self.codes.append(exc.code)
            self.times.append(trio.current_time())
            self.closed.set()


async def read_to_end(stream):
    """Every message the peer sent until it closed the stream."""
    reader, got = FrameReader(), []
    while data := await stream.receive_some(65536):
        reader.feed(data)
        while (msg := reader.next()) is not None:
            got.append(msg)
    return got


def test_echo_round_trip_and_clean_close():
    async def main():
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            ch = await open_channel(HOST, port, name="alice", kind="app", secret=SECRET,
                                    nursery=nursery)
            assert (ch.peer, ch.peer_kind, ch.version) == ("server", "node", 1)
            msgs = [StationCancel("alice", "bob", bytes([i])) for i in range(50)]
            for m in msgs:
                await ch.send(m)
            got = [await ch.receive() for _ in msgs]
            assert got == msgs
            await ch.aclose()
            await ch.aclose()                                 # idempotent
            with pytest.raises(ChannelClosed) as info:
                await ch.send(msgs[0])
            assert info.value.code == ErrorCode.EMU_CLOSED
            nursery.cancel_scope.cancel()
    run(main)


def test_clean_close_ends_iteration_and_delivers_what_came_before():
    async def main():
        seen, done = [], trio.Event()

        async def collect(channel):
            async for msg in channel:                         # ends at the peer's Goodbye
                seen.append(msg)
            done.set()

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, collect)
            ch = await open_channel(HOST, port, name="a", kind="app", secret=SECRET,
                                    nursery=nursery)
            for i in range(20):
                await ch.send(StationCancel("a", "b", bytes([i])))
            await ch.aclose()
            await done.wait()
            assert [m.key for m in seen] == [bytes([i]) for i in range(20)]
            nursery.cancel_scope.cancel()
    run(main)


def test_a_bad_client_is_refused_while_a_good_one_is_served(caplog):
    async def main():
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery)
            good = await open_channel(HOST, port, name="good", kind="node", secret=SECRET,
                                      nursery=nursery)
            await good.send(StationCancel("x", "y", b"1"))
            assert (await good.receive()).key == b"1"
            # wrong secret: refused with its code, on both sides
            with pytest.raises(ChannelClosed) as info:
                await open_channel(HOST, port, name="intruder", kind="node",
                                   secret=b"guessed", nursery=nursery)
            assert info.value.code == ErrorCode.EMU_AUTH_FAILED
            # no common version
            with pytest.raises(ChannelClosed) as info:
                await open_channel(HOST, port, name="future", kind="node", secret=SECRET,
                                   nursery=nursery, versions=(7,))
            assert info.value.code == ErrorCode.UNSUPPORTED_VERSION
            # garbage instead of a Hello: told MALFORMED, then closed
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.send_all(b"\x00\x00\x00\x02\xc1\xc1")
            assert [m.code for m in await read_to_end(stream)] == [ErrorCode.MALFORMED]
            # an application message before the handshake
            stream = await trio.open_tcp_stream(HOST, port)
            await stream.send_all(encode_frame(StationCancel("x", "y", b"")))
            assert [m.code for m in await read_to_end(stream)] == [ErrorCode.EMU_HANDSHAKE]
            # the good client is still served
            await good.send(StationCancel("x", "y", b"2"))
            assert (await good.receive()).key == b"2"
            await good.aclose()
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="qstack.emu"):
        run(main)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("intruder" in r and "EMU_AUTH_FAILED" in r for r in refusals), refusals


@pytest.mark.parametrize("bad, code", [
    (b"\x00\x10\x00\x01", ErrorCode.FRAME_TOO_LARGE),               # 1 MiB + 1
    (b"\x00\x00\x00\x03\x92\xcd\x06", ErrorCode.MALFORMED),
    (b"\x00\x00\x00\x05\x92\xcd\x06\x1f\x01", ErrorCode.UNKNOWN_TYPE),  # [0x061F, 1]
])
def test_a_bad_frame_after_the_handshake_closes_that_connection_with_its_code(bad, code):
    async def main():
        ends = Ends()
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, ends)
            stream, _ = await raw_client(port)
            await stream.send_all(bad)
            got = await read_to_end(stream)
            assert isinstance(got[-1], ErrorFrame) and got[-1].code == code
            await ends.closed.wait()
            assert ends.codes == [code]
            nursery.cancel_scope.cancel()
    run(main)


def test_a_silent_peer_is_noticed_within_the_bound():
    async def main():
        ends = Ends()
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, ends, **FAST)
            stream, _ = await raw_client(port)            # then says nothing, reads nothing
            last_sent = trio.current_time()
            await ends.closed.wait()
            assert ends.codes == [ErrorCode.EMU_PEER_GONE]
            when = ends.times[0]
            # dead_after_s + one tick (keepalive_s / 2 = 0.05 s), in trio's
            # virtual seconds; 1e-9 s for the float sums of the clock
            assert FAST["dead_after_s"] < when - last_sent <= FAST["dead_after_s"] + 0.05 + 1e-9
            got = await read_to_end(stream)               # it was told, where it could hear
            assert got[-1] == ErrorFrame(600, got[-1].detail)
            nursery.cancel_scope.cancel()
    run(main, mock=True)


def test_a_live_idle_pair_keeps_each_other_alive():
    async def main():
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, **FAST)
            ch = await open_channel(HOST, port, name="idle", kind="app", secret=SECRET,
                                    nursery=nursery, **FAST)
            await trio.sleep(5 * FAST["dead_after_s"])    # keepalives both ways
            await ch.send(StationCancel("a", "b", b"still"))
            assert (await ch.receive()).key == b"still"
            nursery.cancel_scope.cancel()
    run(main, mock=True)


def test_a_peer_that_stops_reading_is_noticed():
    async def main():
        async with trio.open_nursery() as nursery:
            peer_stream = []

            async def stubborn(stream):
                # handshake, then keep sending keepalives but never read again
                session = Session("server", "stubborn", "node", SECRET, **FAST)
                while not session.established:
                    session.receive_data(await stream.receive_some(65536))
                    await stream.send_all(session.data_to_send())
                peer_stream.append(stream)
                while True:
                    await trio.sleep(0.05)
                    session.tick(trio.current_time(), check_peer=False)
                    await stream.send_all(session.data_to_send())

            listeners = await trio.open_tcp_listeners(0, host=HOST)
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, stubborn, listeners)
            ch = await open_channel(HOST, port, name="writer", kind="node", secret=SECRET,
                                    nursery=nursery, **FAST)
            blob = Blob(0, 0, bytes(1 << 18))
            with pytest.raises(ChannelClosed) as info:
                for _ in range(2000):                     # at most 500 MiB: buffers fill first
                    await ch.send(blob)
            assert info.value.code == ErrorCode.EMU_PEER_GONE
            assert "stopped reading" in info.value.detail
            nursery.cancel_scope.cancel()
    run(main, mock=True)


def test_a_vanished_peer_is_gone_at_once():
    async def main():
        ends = Ends()
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, ends)
            stream, _ = await raw_client(port)
            await stream.aclose()                         # no Goodbye: as if killed
            await ends.closed.wait()
            assert ends.codes == [ErrorCode.EMU_PEER_GONE]
            nursery.cancel_scope.cancel()
    run(main)


def test_a_channel_whose_owner_is_cancelled_closes_its_socket_at_once():
    """A daemon cancelled in-process (the driver suite's crash) must look to
    its peers like a killed process: the socket closes when the nursery that
    runs the channel is cancelled, not when the garbage collector finds it.
    (A late close of an old connection once broke a restarted peer's new
    session.) The garbage collector is off, so only the channel can close it."""
    import gc

    async def main():
        ends = Ends()
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, ends)
            with trio.CancelScope() as owner:
                async with trio.open_nursery() as owned:
                    channel = await open_channel(HOST, port, name="client", kind="node",
                                                 secret=SECRET, nursery=owned)
                    await channel.send(Blob(1, 1, b"x"))
                    owner.cancel()
            assert channel.closed
            with trio.fail_after(1):
                await ends.closed.wait()
            assert ends.codes == [ErrorCode.EMU_PEER_GONE]
            nursery.cancel_scope.cancel()

    gc.disable()
    try:
        run(main, mock=True)
    finally:
        gc.enable()


def test_concurrent_senders_never_interleave_frames():
    senders, per_sender = 4, 60

    async def main():
        got = []
        done = trio.Event()

        async def collect(channel):
            async for msg in channel:
                got.append(msg)
                if len(got) == senders * per_sender:
                    done.set()

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, collect)
            ch = await open_channel(HOST, port, name="many", kind="app", secret=SECRET,
                                    nursery=nursery)

            async def sender(k):
                for i in range(per_sender):
                    # sizes from bytes to 200 kB, so some frames take several writes
                    size = (i * 7919 * (k + 1)) % 200_000
                    await ch.send(Blob(k, i, bytes([k]) * size))

            async with trio.open_nursery() as senders_nursery:
                for k in range(senders):
                    senders_nursery.start_soon(sender, k)
            await done.wait()
            assert not ch.closed
            for k in range(senders):
                mine = [m for m in got if m.sender == k]
                assert [m.seq for m in mine] == list(range(per_sender))
                assert all(m.payload == bytes([k]) * len(m.payload) for m in mine)
            await ch.aclose()
            nursery.cancel_scope.cancel()
    run(main)


def test_back_pressure_does_not_blame_the_peer():
    async def main():
        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, echo, **FAST)
            ch = await open_channel(HOST, port, name="slow", kind="app", secret=SECRET,
                                    nursery=nursery, max_queued=8, **FAST)
            for i in range(200):
                await ch.send(StationCancel("a", "b", i.to_bytes(2, "big")))
            await trio.sleep(10 * FAST["dead_after_s"])   # the queue is full: reading stopped
            got = [int.from_bytes((await ch.receive()).key, "big") for _ in range(200)]
            assert got == list(range(200)) and not ch.closed
            nursery.cancel_scope.cancel()
    run(main, mock=True)


def test_nobody_listening_or_answering_is_peer_gone():
    async def main():
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            # accepted by the kernel, never answered
            with pytest.raises(ChannelClosed) as info:
                await open_channel(HOST, port, name="a", kind="app", secret=SECRET,
                                   nursery=nursery, connect_timeout_s=1.0)
            assert info.value.code == ErrorCode.EMU_PEER_GONE
            for listener in listeners:
                await listener.aclose()
            with pytest.raises(ChannelClosed) as info:
                await open_channel(HOST, port, name="a", kind="app", secret=SECRET,
                                   nursery=nursery)
            assert info.value.code == ErrorCode.EMU_PEER_GONE
    run(main, mock=True)


def test_a_client_that_never_says_hello_is_dropped():
    async def main():
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host=HOST)
            port = listeners[0].socket.getsockname()[1]
            outcome, dropped = [], trio.Event()

            async def serve_one(task_status=trio.TASK_STATUS_IGNORED):
                task_status.started()
                stream = await listeners[0].accept()
                try:
                    await accept_channel(stream, name="s", kind="node", secret=SECRET,
                                         nursery=nursery, handshake_timeout_s=1.0)
                except ChannelClosed as exc:
                    outcome.append((exc.code, trio.current_time()))
                    dropped.set()

            await nursery.start(serve_one)
            stream = await trio.open_tcp_stream(HOST, port)
            start = trio.current_time()
            await read_to_end(stream)                      # the server hangs up
            await dropped.wait()
            assert outcome == [(ErrorCode.EMU_PEER_GONE, pytest.approx(start + 1.0, abs=0.01))]
    run(main, mock=True)


def test_a_cancelled_sender_never_cuts_a_frame():
    """Senders cancelled at random moments while large frames go out: each
    frame arrives whole or not at all, and the stream stays in frame."""
    async def main():
        got, done = [], trio.Event()

        async def collect(channel):
            async for msg in channel:
                got.append(msg)
                if msg.sender == 9:
                    done.set()

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, collect)
            ch = await open_channel(HOST, port, name="c", kind="app", secret=SECRET,
                                    nursery=nursery)
            blob = bytes(400_000)
            for i in range(30):
                with trio.move_on_after(i * 1e-4):
                    await ch.send(Blob(1, i, blob))
            await ch.send(Blob(9, 0, b"last"))
            await done.wait()
            assert not ch.closed and got[-1] == Blob(9, 0, b"last")
            seqs = [m.seq for m in got[:-1]]
            assert seqs == sorted(set(seqs)) and all(m.payload == blob for m in got[:-1])
            nursery.cancel_scope.cancel()
    run(main)


def test_the_server_may_speak_first_after_welcome():
    async def main():
        async def greet(channel):
            await channel.send(StationCancel("server", channel.peer, b"hi"))
            async for _ in channel:
                pass

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, greet)
            ch = await open_channel(HOST, port, name="newcomer", kind="app", secret=SECRET,
                                    nursery=nursery)
            assert await ch.receive() == StationCancel("server", "newcomer", b"hi")
            await ch.aclose()
            nursery.cancel_scope.cancel()
    run(main)


def test_a_server_that_says_goodbye_at_once():
    """Welcome and Goodbye may arrive together: the channel opens, already
    closed cleanly, and iteration gives nothing."""
    async def main():
        async def leave(channel):
            return

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, leave)
            for _ in range(5):
                ch = await open_channel(HOST, port, name="late", kind="app", secret=SECRET,
                                        nursery=nursery)
                assert [m async for m in ch] == []
                assert ch.close_code == ErrorCode.EMU_CLOSED
            nursery.cancel_scope.cancel()
    run(main)


def test_a_failing_handler_ends_its_connection_only(caplog):
    async def main():
        async def fragile(channel):
            msg = await channel.receive()
            if msg.key == b"boom":
                raise RuntimeError("a bug in the handler")
            await channel.send(msg)
            await channel.receive()

        async with trio.open_nursery() as nursery:
            port = await start_server(nursery, fragile)
            victim = await open_channel(HOST, port, name="v", kind="app", secret=SECRET,
                                        nursery=nursery)
            await victim.send(StationCancel("a", "b", b"boom"))
            with pytest.raises(ChannelClosed) as info:
                await victim.receive()
            assert info.value.code == ErrorCode.INTERNAL_ERROR
            other = await open_channel(HOST, port, name="o", kind="app", secret=SECRET,
                                       nursery=nursery)
            await other.send(StationCancel("a", "b", b"fine"))
            assert (await other.receive()).key == b"fine"
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.ERROR, logger="qstack.emu"):
        run(main)
    assert any("handler failed" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- batched writes

def _counting_writes(channel):
    """Count ``channel``'s socket writes (``calls[0]``)."""
    calls = [0]
    write = channel._write

    async def counted(data, limit_s=None):
        calls[0] += 1
        await write(data, limit_s)
    channel._write = counted
    return calls


class _Collect:
    """A server handler that keeps every message that arrives."""

    def __init__(self):
        self.got = []

    async def __call__(self, channel):
        async for msg in channel:
            self.got.append(msg)

    async def until(self, n):
        with trio.fail_after(10):
            while len(self.got) < n:
                await trio.sleep(0.005)


@asynccontextmanager
async def _collecting(name):
    """A channel to a server that collects: ``(channel, collector, nursery)``."""
    collect = _Collect()
    async with trio.open_nursery() as nursery:
        port = await start_server(nursery, collect)
        ch = await open_channel(HOST, port, name=name, kind="app", secret=SECRET,
                                nursery=nursery)
        yield ch, collect, nursery
        await ch.aclose()
        nursery.cancel_scope.cancel()


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.one_of(st.integers(0, 300), st.just(150_000)), min_size=1,
                      max_size=MAX_BATCH + 40))
def test_forward_writes_everything_queued_in_one_write_per_batch_in_order(sizes):
    """What is queued when ``forward`` wakes leaves in ceil(n / MAX_BATCH)
    writes (large frames included: a write the socket takes in part is
    finished by the slow path), and arrives whole and in order."""
    msgs = [Blob(1, i, b"x" * size) for i, size in enumerate(sizes)]

    async def main():
        async with _collecting("batch") as (ch, collect, _nursery):
            writes = _counting_writes(ch)
            send, recv = trio.open_memory_channel(float("inf"))
            for msg in msgs:                      # all queued before the writer runs
                send.send_nowait(msg)
            send.close()
            await forward(recv, ch)
            await collect.until(len(msgs))
            assert collect.got == msgs
            assert writes[0] == -(-len(msgs) // MAX_BATCH)
    run(main)


def test_forward_sends_what_comes_later_in_later_writes_in_order():
    async def main():
        async with _collecting("bursts") as (ch, collect, nursery):
            send, recv = trio.open_memory_channel(float("inf"))
            nursery.start_soon(forward, recv, ch)
            for burst in range(3):           # three bursts, the writer waiting between
                for i in range(10):
                    send.send_nowait(Blob(2, burst * 10 + i, b""))
                await trio.testing.wait_all_tasks_blocked()
            await collect.until(30)
            assert [m.seq for m in collect.got] == list(range(30))
    run(main)


def test_send_many_writes_what_comes_before_a_message_it_cannot_encode_then_raises():
    async def main():
        async with _collecting("bad") as (ch, collect, _nursery):
            with pytest.raises(QStackError) as info:
                await ch.send_many([Blob(3, 0, b""), Blob(3, 1, b""), "not a message",
                                    Blob(3, 2, b"")])
            assert info.value.code == ErrorCode.BAD_FIELD
            assert not ch.closed                   # as send: the channel goes on
            await ch.send(Blob(3, 3, b""))
            await collect.until(3)
            assert [m.seq for m in collect.got] == [0, 1, 3]
    run(main)
