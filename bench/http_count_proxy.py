"""A loopback TCP proxy that counts HTTP/1.1 requests (for "HTTP calls per request").

    python bench/http_count_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT COUNT_FILE

Runs as its own process so its CPU is not charged to anything the benchmark reports.
Each request line seen on a client-to-server stream counts once; the total is written
to COUNT_FILE on SIGTERM and after every request (cheap: the benchmark runs it only
in the short counting pass), and the count per route (ids replaced by {id}) to
COUNT_FILE.routes.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

_REQUEST_LINE = re.compile(rb"(GET|POST|PUT|DELETE|PATCH|HEAD) (/[^\s?]*)\S* HTTP/1\.1\r\n")
_IDS = re.compile(r"(?<=/leases/)[^/]+(?=/)|(?<=/requests/)[^/]+(?=/result$)|(?<=/groups/)[^/]+")


class Counter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.total = 0
        self.routes: dict[str, int] = {}

    def add(self, lines: list[tuple[bytes, bytes]]) -> None:
        if lines:
            self.total += len(lines)
            for method, path in lines:
                route = method.decode() + " " + _IDS.sub("{id}", path.decode(errors="replace"))
                self.routes[route] = self.routes.get(route, 0) + 1
            self.write()

    def write(self) -> None:
        # Replaced in one step: a reader never sees the file empty (write_text
        # truncates first, and the benchmark read "" once).
        for path, text in ((self.path, str(self.total)),
                           (self.path.with_name(self.path.name + ".routes.json"),
                            json.dumps(self.routes, sort_keys=True))):
            partial = path.with_name(path.name + ".tmp")
            partial.write_text(text)
            os.replace(partial, path)


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: Counter | None
) -> None:
    tail = b""
    try:
        while data := await reader.read(65536):
            if counter is not None:
                window = tail + data
                counter.add([(m[1], m[2]) for m in _REQUEST_LINE.finditer(window)
                             if m.end() > len(tail)])
                tail = window[-256:]
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(listen: int, host: str, port: int, count_file: Path) -> None:
    counter = Counter(count_file)
    counter.write()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _pipe(client_r, server_w, counter), _pipe(server_r, client_w, None)
            )
        except asyncio.CancelledError:  # stopped with connections open (idle keep-alives)
            server_w.close()
            client_w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
