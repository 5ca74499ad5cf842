// Durable functions for the end-to-end scenarios, written against the TypeScript SDK (0.11.4 and 0.11.5)
// with its generator API. Plain ES modules, so Node runs it without a compiler.
//
//   node app.mjs worker URL GROUP DIR TTL_MS        serve the functions until killed; prints "ready"
//   node app.mjs invoke URL GROUP ID FUNC ARGS_JSON  start FUNC(...ARGS) on GROUP as ID, print its result as JSON
//
// URL picks the transport: http://host:port is the server's HTTP API; nats://host:port?serverTopic=S&workerTopic=W
// is a NATS server, reached through the SDK's NatsNetwork (0.11.5; needs @nats-io/transport-node) with api prefix S
// and worker prefix W.
// Every completed step appends one line to DIR/steps.log, so the runner can check that no step ran twice.

import { appendFileSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";

// The SDK declares Node >= 22; on Node 20 the only missing API is Promise.withResolvers.
Promise.withResolvers ??= function () {
  let resolve, reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
};
const { Resonate } = await import("@resonatehq/sdk");

const record = (dir, line) => appendFileSync(`${dir}/steps.log`, `${line}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function step(ctx, dir, name) {
  record(dir, name);
  return name;
}

function* countdown(ctx, dir, n, sleepMs) {
  const done = [];
  for (let i = n; i > 0; i--) {
    done.push(yield* ctx.run(step, dir, `count-${i}`));
    yield* ctx.sleep(sleepMs);
  }
  return done;
}

function square(ctx, x) {
  return x * x;
}

function* fan_out(ctx, n) {
  const children = [];
  const workers = ctx.options({ target: ctx.getDependency("group") });
  for (let i = 1; i <= n; i++) children.push(yield* ctx.beginRpc("square", i, workers));
  let sum = 0;
  for (const child of children) sum += yield* child;
  return sum;
}

function announce(ctx, dir, promiseId) {
  writeFileSync(`${dir}/promise-id`, promiseId);
}

function* approval(ctx, dir) {
  const decision = yield* ctx.promise({ timeout: 5 * 60 * 1000 });
  yield* ctx.run(announce, dir, decision.id);
  return { approved: yield* decision };
}

async function slow_step(ctx, dir, ms) {
  await sleep(ms);
  record(dir, "slow");
  return "slow done";
}

function* long_step(ctx, dir, ms) {
  return yield* ctx.run(slow_step, dir, ms);
}

const FUNCTIONS = { step, countdown, square, fan_out, announce, approval, slow_step, long_step };

// A Resonate in `group` on the server at `url`, over HTTP or over NATS (see the top of this file).
async function connect(url, group, options = {}) {
  // A server with auth: jwt gets the harness's token through the SDK's token option.
  const token = process.env.RESONATE_E2E_TOKEN;
  if (!url.startsWith("nats://")) return new Resonate({ url, group, ...(token ? { token } : {}), ...options });
  const { connect: natsConnect } = await import("@nats-io/transport-node");
  const { NatsNetwork } = await import("@resonatehq/sdk/nats");
  const parsed = new URL(url);
  const conn = await natsConnect({ servers: parsed.host });
  // The pid names this process's unicast subject: lowercase, and the same for the SDK and the network.
  const pid = randomUUID().replace(/-/g, "");
  const network = new NatsNetwork({
    conn,
    group,
    pid,
    serverTopic: parsed.searchParams.get("serverTopic"),
    workerTopic: parsed.searchParams.get("workerTopic"),
  });
  return new Resonate({ group, pid, network, ...options });
}

async function worker(url, group, dir, ttlMs) {
  const resonate = await connect(url, group, { ttl: Number(ttlMs) });
  for (const [name, fn] of Object.entries(FUNCTIONS)) resonate.register(name, fn);
  resonate.setDependency("group", group);
  // Ready once a settlement reaches this process over its message stream.
  const probe = `ready-${randomUUID()}`;
  await resonate.promises.create(probe, Date.now() + 60_000, { tags: { "resonate:external": "true" } });
  const handle = await resonate.get(probe);
  await resonate.promises.resolve(probe);
  await handle.result();
  console.log("ready");
}

async function invoke(url, group, id, func, args) {
  const resonate = await connect(url, `${group}-client`);
  const result = await resonate.rpc(id, func, ...JSON.parse(args), resonate.options({ target: group }));
  console.log(JSON.stringify(result ?? null));
  await resonate.stop();
  process.exit(0);
}

const [mode, ...rest] = process.argv.slice(2);
await { worker, invoke }[mode](...rest);
