"""The fan-out benchmark's load generator (bench/fanout runs it on the load CPU).

    fanout_load.py --ports P1[,P2] --members N --messages M [--window W]

Connects N members to /fan/ (round robin over the ports) and waits for each one's "ready",
then prints "connected" and waits for a line on stdin (the runner samples the server's CPU
meanwhile). Then one sender on /send/ sends M messages, at most W of them not yet delivered
to every member. Prints one JSON line: deliveries, seconds, deliveries per second, the p50
and p99 of send-to-last-delivery (µs), and how many messages some member never got (a
message is given up 10 s after it was sent).
"""

import argparse
import asyncio
import json
import sys
import time

import websockets

GIVE_UP = 10.0


async def member(url, counts, done, state):
    ws = await websockets.connect(url, max_queue=None, ping_interval=None)
    assert await ws.recv() == "ready"
    state["ready"] += 1

    async def reader():
        async for text in ws:
            n = int(text)
            counts[n] += 1
            if counts[n] == state["members"]:
                done[n].set()
    return ws, asyncio.ensure_future(reader())


async def main(args):
    ports = [int(p) for p in args.ports.split(",")]
    counts = [0] * args.messages
    done = [asyncio.Event() for _ in range(args.messages)]
    state = {"ready": 0, "members": args.members}
    members = []
    for start in range(0, args.members, 50):  # connect in batches: no accept storm
        members += await asyncio.gather(*(
            member(f"ws://127.0.0.1:{ports[i % len(ports)]}/fan/", counts, done, state)
            for i in range(start, min(start + 50, args.members))))
    sender = await websockets.connect(f"ws://127.0.0.1:{ports[0]}/send/", ping_interval=None)
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    window = asyncio.Semaphore(args.window)
    latencies, lost = [], 0

    async def track(n, sent):
        nonlocal lost
        try:
            await asyncio.wait_for(done[n].wait(), GIVE_UP)
            latencies.append(time.perf_counter() - sent)
        except asyncio.TimeoutError:
            lost += 1
        finally:
            window.release()

    began = time.perf_counter()
    trackers = []
    for n in range(args.messages):
        await window.acquire()
        trackers.append(asyncio.ensure_future(track(n, time.perf_counter())))
        await sender.send(str(n))
    await asyncio.gather(*trackers)
    seconds = time.perf_counter() - began
    deliveries = sum(counts)
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6) \
            if latencies else None
    print(json.dumps({"deliveries": deliveries, "seconds": seconds,
                      "rate": deliveries / seconds, "p50_us": pct(0.50), "p99_us": pct(0.99),
                      "lost": lost}), flush=True)
    for ws, reader in members:
        reader.cancel()
        await ws.close()
    await sender.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", required=True)
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--window", type=int, default=8)
    asyncio.run(main(parser.parse_args()))
