//! Durable functions for the end-to-end scenarios, written against the Rust SDK (0.6.0).
//!
//!     app worker URL GROUP DIR TTL_MS        serve the functions until killed; prints "ready"
//!     app invoke URL GROUP ID FUNC ARGS_JSON  start FUNC(ARGS) on GROUP as ID, print its result as JSON
//!
//! Every completed step appends one line to DIR/steps.log, so the runner can check that no step ran twice.

use resonate_sdk::prelude::*;
use resonate_sdk::types::Value;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn record(dir: &str, line: &str) -> std::io::Result<()> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{dir}/steps.log"))?;
    writeln!(log, "{line}")
}

#[resonate_sdk::function]
async fn step(dir: String, name: String) -> Result<String> {
    record(&dir, &name)?;
    Ok(name)
}

#[resonate_sdk::function]
async fn countdown(ctx: &Context, dir: String, n: u32, sleep_ms: u64) -> Result<Vec<String>> {
    let mut done = Vec::new();
    for i in (1..=n).rev() {
        done.push(ctx.run(step, (dir.clone(), format!("count-{i}"))).await?);
        ctx.sleep(Duration::from_millis(sleep_ms)).await?;
    }
    Ok(done)
}

#[resonate_sdk::function]
async fn square(x: i64) -> Result<i64> {
    Ok(x * x)
}

#[resonate_sdk::function]
async fn fan_out(ctx: &Context, n: i64) -> Result<i64> {
    let children = (1..=n)
        .map(|i| ctx.rpc::<i64>("square", i).spawn())
        .collect::<Result<Vec<_>>>()?;
    let mut sum = 0;
    for child in children {
        sum += child.await?;
    }
    Ok(sum)
}

#[resonate_sdk::function]
async fn announce(dir: String, promise_id: String) -> Result<()> {
    Ok(std::fs::write(format!("{dir}/promise-id"), promise_id)?)
}

#[resonate_sdk::function]
async fn approval(ctx: &Context, dir: String) -> Result<serde_json::Value> {
    let decision = ctx
        .promise::<serde_json::Value>()
        .timeout(Duration::from_secs(300))
        .create()?;
    ctx.run(announce, (dir, decision.id().await?)).await?;
    Ok(json!({ "approved": decision.await? }))
}

#[resonate_sdk::function]
async fn slow_step(dir: String, ms: u64) -> Result<String> {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    record(&dir, "slow")?;
    Ok("slow done".into())
}

#[resonate_sdk::function]
async fn long_step(ctx: &Context, dir: String, ms: u64) -> Result<String> {
    ctx.run(slow_step, (dir, ms)).await
}

fn connect(url: &str, group: &str, ttl: Option<u64>) -> Resonate {
    Resonate::new(ResonateConfig {
        url: Some(url.into()),
        group: Some(group.into()),
        ttl,
        // A server with auth: jwt gets the harness's token through the SDK's token option.
        token: std::env::var("RESONATE_E2E_TOKEN").ok(),
        ..Default::default()
    })
}

async fn worker(url: &str, group: &str, ttl_ms: &str) -> Result<()> {
    let resonate = connect(
        url,
        group,
        Some(ttl_ms.parse().expect("TTL_MS is a number")),
    );
    resonate.register(step)?;
    resonate.register(countdown)?;
    resonate.register(square)?;
    resonate.register(fan_out)?;
    resonate.register(announce)?;
    resonate.register(approval)?;
    resonate.register(slow_step)?;
    resonate.register(long_step)?;
    // Ready once a settlement reaches this process over its message stream.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let probe = format!("ready-{}-{now}", std::process::id());
    let tags = HashMap::from([("resonate:external".to_string(), "true".to_string())]);
    resonate
        .promises
        .create(&probe, now + 60_000, Value::default(), tags)
        .await?;
    let handle = resonate.get::<()>(&probe).await?;
    resonate.promises.resolve(&probe, Value::default()).await?;
    handle.result().await?;
    println!("ready");
    std::future::pending().await
}

async fn invoke(url: &str, group: &str, id: &str, func: &str, args: &str) -> Result<()> {
    let resonate = connect(url, &format!("{group}-client"), None);
    let mut args: Vec<serde_json::Value> = serde_json::from_str(args)?;
    // One argument travels as itself, several as a tuple (a JSON array).
    let args = if args.len() == 1 {
        args.remove(0)
    } else {
        args.into()
    };
    let result: serde_json::Value = resonate.rpc(id, func, args).target(group).await?;
    println!("{result}");
    resonate.stop().await
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["worker", url, group, _dir, ttl] => worker(url, group, ttl).await,
        ["invoke", url, group, id, func, args] => invoke(url, group, id, func, args).await,
        _ => panic!(
            "usage: app worker URL GROUP DIR TTL_MS | app invoke URL GROUP ID FUNC ARGS_JSON"
        ),
    }
}
