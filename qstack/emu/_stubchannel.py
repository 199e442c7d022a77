"""TEMPORARY stand-in for qstack.emu.channel (being written on branch emuwire):
length-prefixed frames, a plain name exchange, no secret, no keepalive."""
from __future__ import annotations

import socket
import struct

import msgpack
import trio

from qstack.core.errors import DecodeError, ErrorCode, QStackError
from qstack.core.messages import MAX_MESSAGE_BYTES, decode, encode


class ChannelClosed(QStackError):
    pass


class Channel:
    def __init__(self, stream: trio.SocketStream, peer: str, peer_kind: str) -> None:
        self.stream = stream
        self.peer = peer
        self.peer_kind = peer_kind
        self.version = 1
        self._lock = trio.Lock()
        self._buf = bytearray()
        self.closed = False

    async def _send_raw(self, data: bytes) -> None:
        async with self._lock:
            try:
                await self.stream.send_all(struct.pack(">I", len(data)) + data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ChannelClosed(ErrorCode.EMU_PEER_GONE, str(exc)) from None

    async def send(self, msg) -> None:
        await self._send_raw(encode(msg))

    async def _recv_raw(self) -> bytes:
        while True:
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if n > MAX_MESSAGE_BYTES:
                    raise ChannelClosed(ErrorCode.FRAME_TOO_LARGE, f"{n} bytes")
                if len(self._buf) >= 4 + n:
                    data = bytes(self._buf[4:4 + n])
                    del self._buf[:4 + n]
                    return data
            try:
                chunk = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise ChannelClosed(ErrorCode.EMU_PEER_GONE, str(exc)) from None
            if not chunk:
                raise ChannelClosed(ErrorCode.EMU_PEER_GONE, "connection closed")
            self._buf += chunk

    async def receive(self):
        data = await self._recv_raw()
        try:
            return decode(data)
        except DecodeError as err:
            await self.aclose()
            raise ChannelClosed(err.code, err.detail) from None

    async def aclose(self, code=None, detail: str = "") -> None:
        if not self.closed:
            self.closed = True
            with trio.move_on_after(1):
                await self.stream.aclose()

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.receive()
        except ChannelClosed:
            raise StopAsyncIteration


async def _hello(stream, name, kind):
    data = msgpack.packb([name, kind])
    await stream.send_all(struct.pack(">I", len(data)) + data)


async def open_channel(host, port, *, name, kind, secret, nursery=None, keepalive_s=0.5,
                       dead_after_s=2.0, connect_timeout_s=5.0) -> Channel:
    try:
        with trio.fail_after(connect_timeout_s):
            stream = await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as exc:
        raise ChannelClosed(ErrorCode.EMU_PEER_GONE, f"{host}:{port}: {exc}") from None
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await _hello(stream, name, kind)
    ch = Channel(stream, "?", "?")
    peer, pkind = msgpack.unpackb(await ch._recv_raw())
    ch.peer, ch.peer_kind = peer, pkind
    return ch


async def accept_channel(stream, *, name, kind, secret, nursery=None, handshake_timeout_s=5.0,
                         keepalive_s=0.5, dead_after_s=2.0) -> Channel:
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ch = Channel(stream, "?", "?")
    with trio.fail_after(handshake_timeout_s):
        peer, pkind = msgpack.unpackb(await ch._recv_raw())
    ch.peer, ch.peer_kind = peer, pkind
    await _hello(stream, name, kind)
    return ch
