"""A small TCP proxy on loopback between the worker and ClickHouse: a slow server, or a flaky connection.

Every chunk read from one side is written to the other `delay` seconds later, in order. The delay is latency
(the proxy keeps reading meanwhile), so each round trip of the native protocol costs 2 x delay, as a distant or
overloaded server would. With `drop_probability`, the server's reply to an insert whose query text contains
`drop_match` (and whose data is larger than `upload_bytes`) is sometimes not delivered and the connection is reset
instead: the insert is committed but the client never hears it, the "lost acknowledgement" that makes blind
retries write twice. It runs its own
asyncio loop in a thread, so the test code stays synchronous.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

from devtools.services import free_port


class DelayProxy:
    def __init__(self, target_port: int, delay: float = 0.0, target_host: str = "127.0.0.1", seed: int = 0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.drop_probability = 0.0
        self.drop_match = b"INSERT INTO"
        self.upload_bytes = 4096
        self.resets = 0
        self._rng = random.Random(seed)
        self.port = free_port()
        self.connections = 0
        self.bytes = {"up": 0, "down": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def close_connections(self) -> None:
        """Closes every connection through the proxy, as a server that drops its clients does; new connections
        are still taken."""
        asyncio.run_coroutine_threadsafe(self._close_writers(), self._loop).result(10)

    async def _close_writers(self) -> None:
        for writer in list(self._writers):
            writer.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()  # the connection handlers finish on their own
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self.connections += 1
        self._writers |= {client_writer, server_writer}
        uploaded: list[Any] = [0, b""]  # bytes the client sent since the server last answered; the last INSERT
        pumps = [asyncio.create_task(self._pump(client_reader, server_writer, "up", uploaded)),
                 asyncio.create_task(self._pump(server_reader, client_writer, "down", uploaded))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_writer, server_writer):
                writer.close()
                self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str,
                    uploaded: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> Any:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    return
                if direction == "up":
                    uploaded[0] += len(data)
                    if b"INSERT INTO" in data:
                        uploaded[1] = data
                else:
                    if (uploaded[0] > self.upload_bytes and self.drop_probability and self.drop_match in uploaded[1]
                            and self._rng.random() < self.drop_probability):
                        self.resets += 1
                        return  # _handle closes both sides: the reply is lost
                    uploaded[0] = 0
                writer.write(data)
                await writer.drain()
                self.bytes[direction] += len(data)

        async def read() -> None:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:  # end of stream: what is queued is still delivered
                    return

        delivering = asyncio.create_task(deliver())
        reading = asyncio.create_task(read())
        try:
            # A dropped reply ends delivery at once, and _handle then resets both sides.
            await asyncio.wait({reading, delivering}, return_when=asyncio.FIRST_COMPLETED)
            if not delivering.done():
                await delivering
        finally:
            reading.cancel()
            delivering.cancel()
