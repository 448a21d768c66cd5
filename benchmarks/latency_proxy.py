"""A loopback TCP proxy that adds latency and counts round trips, for the benchmark.

It listens on 127.0.0.1 only and forwards to a PostgreSQL server on this machine (a Unix
socket or a 127.0.0.1 port), delaying every chunk by ``delay`` seconds in each direction,
so that 25 ms makes a 50 ms round trip. A round trip is counted each time the client
speaks after the server spoke (and for its first message). It stops by itself after
``max_seconds``.

    python3 -m benchmarks.latency_proxy --upstream /tmp/pg/.s.PGSQL.5432 --delay-ms 25 --max-seconds 600
"""

import argparse
import asyncio
import os
import socket
import threading
import time

import psycopg2.extensions


def upstream_address(url):
    """(family, address) of the server behind a libpq URL: its Unix socket or TCP port."""
    params = psycopg2.extensions.parse_dsn(url)
    host, port = params.get("host", "localhost"), int(params.get("port", 5432))
    if host.startswith("/"):
        return socket.AF_UNIX, os.path.join(host, f".s.PGSQL.{port}")
    return socket.AF_INET, (host, port)


class LatencyProxy:
    """The proxy; ``start()`` runs it in a background thread, ``round_trips`` counts since the last reset."""

    def __init__(self, upstream, delay: float, max_seconds: float = 1800):
        if isinstance(upstream, tuple) and upstream[0] != "127.0.0.1":
            raise ValueError("the proxy forwards to 127.0.0.1 or a Unix socket only")
        self.upstream = upstream
        self.delay = delay
        self.deadline = time.monotonic() + max_seconds
        self.round_trips = 0
        self.port = None
        self._ready = threading.Event()
        self._loop = None

    def start(self) -> "LatencyProxy":
        threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True).start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.deadline = 0

    def reset(self) -> int:
        """Return the round trips counted so far and start counting again."""
        counted, self.round_trips = self.round_trips, 0
        return counted

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            while time.monotonic() < self.deadline:
                await asyncio.sleep(0.2)

    async def _open_upstream(self):
        if isinstance(self.upstream, str):
            return await asyncio.open_unix_connection(self.upstream)
        return await asyncio.open_connection(*self.upstream)

    async def _handle(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await self._open_upstream()
        last_speaker = [None]
        await asyncio.gather(
            self._pump(client_reader, server_writer, "client", last_speaker),
            self._pump(server_reader, client_writer, "server", last_speaker),
        )

    async def _pump(self, reader, writer, speaker: str, last_speaker: list) -> None:
        """Relay one direction, each chunk ``delay`` seconds after it arrived, in order."""
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                await asyncio.sleep(max(0.0, due - self._loop.time()))
                writer.write(data)
                await writer.drain()
            writer.close()

        delivery = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                if speaker == "client" and last_speaker[0] != "client":
                    self.round_trips += 1
                last_speaker[0] = speaker
                queue.put_nowait((self._loop.time() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0.0, None))
        try:
            await delivery
        except (ConnectionError, OSError):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="a Unix socket path, or a port on 127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="delay in each direction")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    args = parser.parse_args()
    upstream = args.upstream if os.path.sep in args.upstream else ("127.0.0.1", int(args.upstream))
    proxy = LatencyProxy(upstream, args.delay_ms / 1000, args.max_seconds).start()
    print(f"listening on 127.0.0.1:{proxy.port}, {args.delay_ms} ms each way, for {args.max_seconds:.0f} s")
    try:
        while time.monotonic() < proxy.deadline:
            time.sleep(5)
            print(f"round trips so far: {proxy.round_trips}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
