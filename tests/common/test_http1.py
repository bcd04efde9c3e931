"""gen_common.http1: the HTTP/1.1 wire format and the httpx and httpx2 transports built on it.

The peer is a raw asyncio server on loopback that answers scripted bytes and counts connections,
so framing (Content-Length, chunked, close-delimited, HEAD, 204/304), keep-alive reuse, stale
connections, timeouts and cancellation are each visible on the wire.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import httpx
import openai
import pytest
from gen_common import llm
from gen_common.http1 import Http1Transport, OpenAITransport
from gen_common.settings import OpenAISettings

Answer = Callable[[bytes], bytes | None]  # request head -> answer bytes (None: hang)


class Peer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.close_after_answer = False
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(head)
                reply = self.answer(head)
                if reply is None:
                    await reader.read()  # hang until the client goes away
                    break
                writer.write(reply)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            writer.close()


async def _serve(peer: Peer) -> asyncio.Server:
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    return server


def fixed(body: bytes = b"hello", extra: str = "") -> Answer:
    def answer(head: bytes) -> bytes:
        return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + (
            b"" if head.startswith(b"HEAD") else body
        )

    return answer


async def _client_for(peer: Peer) -> tuple[asyncio.Server, httpx.AsyncClient]:
    server = await _serve(peer)
    return server, httpx.AsyncClient(transport=Http1Transport(), timeout=2.0)


async def test_keep_alive_reuses_one_connection() -> None:
    peer = Peer(fixed())
    server, client = await _client_for(peer)
    async with server, client:
        for _ in range(3):
            response = await client.get(f"http://127.0.0.1:{peer.port}/a?x=1")
            assert (response.status_code, response.content) == (200, b"hello")
    assert peer.connections == 1
    assert peer.requests[0].startswith(b"GET /a?x=1 HTTP/1.1\r\n")


async def test_head_answer_has_no_body_even_with_content_length() -> None:
    peer = Peer(
        lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    server, client = await _client_for(peer)
    async with server, client:
        for _ in range(2):
            response = await client.head(f"http://127.0.0.1:{peer.port}/img.jpg")
            assert response.headers["content-length"] == "999"
            assert response.content == b""
    assert peer.connections == 1  # the HEAD answer was complete: connection kept


async def test_chunked_and_interim_answers() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n"
    )
    peer = Peer(lambda head: chunked)
    server, client = await _client_for(peer)
    async with server, client:
        assert (await client.get(f"http://127.0.0.1:{peer.port}/")).content == b"abcdefg"
        assert (await client.get(f"http://127.0.0.1:{peer.port}/")).content == b"abcdefg"
    assert peer.connections == 1


async def test_close_delimited_body_is_read_and_not_reused() -> None:
    peer = Peer(lambda head: b"HTTP/1.1 200 OK\r\n\r\nuntil-close")
    peer.close_after_answer = True
    server, client = await _client_for(peer)
    async with server, client:
        for _ in range(2):
            assert (await client.get(f"http://127.0.0.1:{peer.port}/")).content == b"until-close"
    assert peer.connections == 2


async def test_a_body_left_unread_closes_the_connection() -> None:
    peer = Peer(fixed(b"x" * 200_000))
    server, client = await _client_for(peer)
    async with server, client:
        async with client.stream("GET", f"http://127.0.0.1:{peer.port}/big") as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(peer.closed.wait(), 2)
        assert (await client.get(f"http://127.0.0.1:{peer.port}/")).status_code == 200
    assert peer.connections == 2


async def test_a_stale_idle_connection_is_replaced() -> None:
    peer = Peer(fixed())
    peer.close_after_answer = True  # but advertises keep-alive: the next reuse finds it closed
    server, client = await _client_for(peer)
    async with server, client:
        assert (await client.get(f"http://127.0.0.1:{peer.port}/")).status_code == 200
        await asyncio.wait_for(peer.closed.wait(), 2)
        assert (await client.get(f"http://127.0.0.1:{peer.port}/")).status_code == 200
    assert peer.connections == 2


async def test_no_answer_is_a_read_timeout_and_the_connection_is_closed() -> None:
    peer = Peer(lambda head: None)
    server, client = await _client_for(peer)
    async with server, client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"http://127.0.0.1:{peer.port}/", timeout=0.2)
        await asyncio.wait_for(peer.closed.wait(), 2)


async def test_a_cancelled_request_closes_its_connection() -> None:
    peer = Peer(lambda head: None)
    server, client = await _client_for(peer)
    async with server, client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get(f"http://127.0.0.1:{peer.port}/", timeout=None)
        await asyncio.wait_for(peer.closed.wait(), 2)  # the peer saw the client go away


async def test_refused_connection_is_connect_error() -> None:
    peer = Peer(fixed())
    server = await _serve(peer)
    port = peer.port
    server.close()
    await server.wait_closed()
    async with httpx.AsyncClient(transport=Http1Transport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_malformed_status_line_is_a_protocol_error() -> None:
    peer = Peer(lambda head: b"SPDY/9 OK\r\n\r\n")
    server, client = await _client_for(peer)
    async with server, client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{peer.port}/")


async def test_post_sends_its_body_with_a_length() -> None:
    peer = Peer(fixed(b"ok"))
    server, client = await _client_for(peer)
    async with server, client:
        response = await client.post(f"http://127.0.0.1:{peer.port}/in", content=b"payload")
    assert response.content == b"ok"
    assert b"content-length: 7\r\n" in peer.requests[0].lower()


async def test_an_http10_answer_is_not_kept_alive_unless_it_asks() -> None:
    plain = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    asks = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    for answer, connections in ((plain, 2), (asks, 1)):
        peer = Peer(lambda head, answer=answer: answer)  # type: ignore[misc]
        server, client = await _client_for(peer)
        async with server, client:
            for _ in range(2):
                response = await client.get(f"http://127.0.0.1:{peer.port}/")
                assert (response.content, response.http_version) == (b"ok", "HTTP/1.0")
        assert peer.connections == connections


async def test_idle_connections_are_capped_in_all_least_recently_used_closed_first() -> None:
    peers = [Peer(fixed()) for _ in range(3)]
    servers = [await _serve(p) for p in peers]
    async with httpx.AsyncClient(transport=Http1Transport(max_idle=2), timeout=2.0) as client:
        for peer in peers:
            assert (await client.get(f"http://127.0.0.1:{peer.port}/")).status_code == 200
        await asyncio.wait_for(peers[0].closed.wait(), 2)  # the oldest idle one was closed
        assert not peers[1].closed.is_set()
        assert not peers[2].closed.is_set()
        assert (await client.get(f"http://127.0.0.1:{peers[2].port}/")).status_code == 200
    for server in servers:
        server.close()
        await server.wait_closed()
    assert [p.connections for p in peers] == [1, 1, 1]  # the last request reused its connection


async def test_the_openai_clients_transport_keeps_alive_and_maps_errors_to_the_sdks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llm.client runs the SDK on OpenAITransport: one kept-alive connection for many calls; a
    hang is the SDK's APITimeoutError, a refused connection its APIConnectionError."""
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)  # no proxy named: the direct transport
    body = b'{"object": "list", "data": []}'
    peer = Peer(fixed(body, "Content-Type: application/json\r\n"))
    server = await _serve(peer)
    settings = OpenAISettings(
        api_key="sk-test", base_url=f"http://127.0.0.1:{peer.port}/v1", timeout_s=1, max_retries=0
    )
    async with server:
        client = llm.client(settings)
        assert isinstance(client._client._transport, OpenAITransport)
        for _ in range(3):
            assert (await client.models.list()).data == []
        assert peer.connections == 1
        peer.answer = lambda head: None
        with pytest.raises(openai.APITimeoutError):
            await client.models.list()
        await client.close()
    server.close()
    await server.wait_closed()
    refused = llm.client(settings)  # the server is gone: connection refused
    with pytest.raises(openai.APIConnectionError):
        await refused.models.list()
    await refused.close()


def test_the_openai_client_keeps_the_sdks_own_transport_behind_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    client = llm.client(OpenAISettings(api_key="sk-test"))
    assert not isinstance(client._client._transport, OpenAITransport)
