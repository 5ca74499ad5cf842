"""Durable functions for the end-to-end scenarios, written against the Python SDK (0.7.4 and 0.8.1).

    app.py worker URL GROUP DIR TTL_MS        serve the functions until killed; prints "ready"
    app.py invoke URL GROUP ID FUNC ARGS_JSON  start FUNC(*ARGS) on GROUP as ID, print its result as JSON

URL picks the transport: http://host:port is the server's HTTP API; nats://host:port?serverTopic=S&workerTopic=W
is a NATS server, reached through the resonate-nats connector (0.8.1 only) with api prefix S and worker prefix W.
Every completed step appends one line to DIR/steps.log, so the runner can check that no step ran twice.
"""

import asyncio
import json
import os
import sys
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from resonate.context import Context
from resonate.resonate import Resonate
from resonate.types import Value


def record(dir: str, line: str) -> None:
    with open(f"{dir}/steps.log", "a") as f:
        f.write(line + "\n")


async def step(ctx: Context, dir: str, name: str) -> str:
    record(dir, name)
    return name


async def countdown(ctx: Context, dir: str, n: int, sleep_ms: int) -> list[str]:
    done = []
    for i in range(n, 0, -1):
        done.append(await ctx.run(step, dir, f"count-{i}"))
        await ctx.sleep(timedelta(milliseconds=sleep_ms))
    return done


async def square(ctx: Context, x: int) -> int:
    return x * x


async def fan_out(ctx: Context, n: int) -> int:
    children = [ctx.rpc("square", i) for i in range(1, n + 1)]
    return sum([await child for child in children])


async def announce(ctx: Context, dir: str, promise_id: str) -> None:
    with open(f"{dir}/promise-id", "w") as f:
        f.write(promise_id)


async def approval(ctx: Context, dir: str) -> dict:
    decision = ctx.promise(timeout=timedelta(minutes=5))
    await ctx.run(announce, dir, await decision.id())
    return {"approved": await decision}


async def slow_step(ctx: Context, dir: str, ms: int) -> str:
    await asyncio.sleep(ms / 1000)
    record(dir, "slow")
    return "slow done"


async def long_step(ctx: Context, dir: str, ms: int) -> str:
    return await ctx.run(slow_step, dir, ms)


FUNCTIONS = [step, countdown, square, fan_out, announce, approval, slow_step, long_step]

# NATS connections opened by connect(), closed before the process exits.
NATS_CLIENTS = []


async def connect(url: str, group: str, **options) -> Resonate:
    """A Resonate in GROUP on the server at URL, over HTTP or over NATS (see the module docstring)."""
    if not url.startswith("nats://"):
        # A server with auth: jwt gets the harness's token through the SDK's token option.
        token = os.environ.get("RESONATE_E2E_TOKEN")
        return Resonate(url=url, group=group, **({"token": token} if token else {}), **options)
    import nats
    from resonate_nats import NatsConnection

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    nc = await nats.connect(f"nats://{parts.netloc}")
    NATS_CLIENTS.append(nc)
    # The pid names this process's unicast subject: lowercase, and the same for the SDK and the connector.
    pid = uuid.uuid4().hex
    network = NatsConnection(
        nc,
        pid=pid,
        group=group,
        server_topic=query["serverTopic"][0],
        worker_topic=query["workerTopic"][0],
    )
    return Resonate(group=group, pid=pid, network=network, **options)


async def worker(url: str, group: str, dir: str, ttl_ms: str) -> None:
    resonate = await connect(url, group, ttl=timedelta(milliseconds=int(ttl_ms)))
    for fn in FUNCTIONS:
        resonate.register(fn)
    # Ready once a settlement reaches this process over its message stream.
    probe = f"ready-{uuid.uuid4().hex}"
    await asyncio.sleep(0)  # 0.7.4 starts its network in a background task: let it run first
    await resonate.promises.create(probe, int(time.time() * 1000) + 60_000, Value(), {"resonate:external": "true"})
    handle = await resonate.get(probe)
    await resonate.promises.resolve(probe, Value())
    await handle.result()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def invoke(url: str, group: str, id: str, func: str, args: str) -> None:
    resonate = await connect(url, f"{group}-client")
    handle = resonate.options(target=group).rpc(id, func, *json.loads(args))
    print(json.dumps(await handle.result()), flush=True)
    await resonate.stop()
    for nc in NATS_CLIENTS:
        await nc.close()


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    asyncio.run({"worker": worker, "invoke": invoke}[mode](*rest))
