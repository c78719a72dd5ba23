#!/usr/bin/env python3
"""Open COUNT keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, send one request on each, then
hold them all idle for HOLD seconds (idle-conns.sh stops it sooner, with SIGTERM) and close them.

Usage: idle_conns.py PORT COUNT HOLD
Prints "ready OPEN FAILED" once every connection has been tried and answered, then "closed" at
the end. Glue for idle-conns.sh, not a load generator: each connection sends exactly one request.
"""

import asyncio
import sys

PARALLEL_CONNECTS = 256


async def open_one(port, i, gate):
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: idle-{i}\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return writer


async def main(port, count, hold):
    gate = asyncio.Semaphore(PARALLEL_CONNECTS)
    results = await asyncio.gather(
        *(open_one(port, i, gate) for i in range(count)), return_exceptions=True
    )
    writers = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"ready {len(writers)} {len(errors)}", flush=True)
    if errors:
        print(f"first error: {errors[0]!r}", file=sys.stderr, flush=True)
    await asyncio.sleep(hold)
    for w in writers:
        w.close()
    print("closed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
