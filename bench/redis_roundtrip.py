"""CPU of a bare Redis round trip through the counters' client (``counters/resp.py``), one at a
time and 32 in flight: the floor under what the limits cost on Redis.

    taskset -c 0 .venv/bin/python bench/redis_roundtrip.py [--redis redis://127.0.0.1:6379/0] [-n 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from stellargate.counters.resp import RespClient


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("-n", type=int, default=6000)
    a = ap.parse_args()
    r = RespClient(a.redis)
    await r.call("PING")
    for c in (1, 32):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(0, a.n, c):
            await asyncio.gather(*(r.call("PING") for _ in range(c)))
        cpu, wall = (time.process_time() - c0) / a.n * 1e6, (time.perf_counter() - w0) / a.n * 1e6
        print(f"{c} in flight: {cpu:.1f} µs CPU a command ({wall:.1f} µs wall)")
    await r.close()


if __name__ == "__main__":
    import uvloop  # the loop the gateway runs on

    uvloop.install()
    asyncio.run(main())
