//! A fault-drill helper for micro-sync's process tests (`tests/fault_processes.rs`):
//! one process contending for a lock or a role on etcd or NATS, printing
//! every holding with wall-clock timestamps so a harness can check that no
//! two processes ever held at once, and kill holders to time the failover.
//!
//! ```text
//! micro-sync-contender BACKEND ADDRESS MODE NAME ID ROUNDS HOLD_MS TTL_MS COUNTER_FILE
//!   BACKEND       etcd | nats
//!   MODE          lock-rounds | elect-rounds   take, hold HOLD_MS, give up; ROUNDS times
//!                 lock-hold | elect-hold       take once and hold until killed
//!   COUNTER_FILE  a file holding a number; each holding reads it, waits HOLD_MS
//!                 and writes it plus one, so overlapping holders lose updates
//! ```
//!
//! Output, one line per event: `held ID TOKEN START_NS`, `freed ID TOKEN END_NS`,
//! `lost ID TOKEN NOW_NS` (nanoseconds since the Unix epoch; one machine, one clock).

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use micro_sync::{
    CampaignOptions, Election, Error, Lock, LockOptions, Result, etcd::EtcdCoordinator,
    nats::NatsCoordinator,
};

#[derive(Debug)]
struct Args {
    backend: String,
    address: String,
    mode: String,
    name: String,
    id: String,
    rounds: u32,
    hold: Duration,
    ttl: Duration,
    counter: PathBuf,
}

fn parse_args() -> Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backend, address, mode, name, id, rounds, hold, ttl, counter] = args.as_slice() else {
        return Err(Error::invalid_argument(
            "usage: micro-sync-contender BACKEND ADDRESS MODE NAME ID ROUNDS HOLD_MS TTL_MS COUNTER_FILE",
        ));
    };
    let number = |what: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| Error::invalid_argument(format!("{what} must be a number, got {value:?}")))
    };
    Ok(Args {
        backend: backend.clone(),
        address: address.clone(),
        mode: mode.clone(),
        name: name.clone(),
        id: id.clone(),
        rounds: u32::try_from(number("ROUNDS", rounds)?)
            .map_err(|_| Error::invalid_argument("ROUNDS is too large"))?,
        hold: Duration::from_millis(number("HOLD_MS", hold)?),
        ttl: Duration::from_millis(number("TTL_MS", ttl)?),
        counter: PathBuf::from(counter),
    })
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0)
}

/// The non-atomic read-modify-write that mutual exclusion has to protect.
async fn bump_counter(path: &Path, hold: Duration) -> Result<()> {
    let current = match tokio::fs::read_to_string(path).await {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| Error::invalid_argument(format!("counter file holds {text:?}")))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
        Err(err) => return Err(err.into()),
    };
    tokio::time::sleep(hold).await;
    tokio::fs::write(path, format!("{}\n", current + 1)).await?;
    Ok(())
}

async fn run<B: Lock + Election>(backend: B, args: &Args) -> Result<()> {
    let lock_options = LockOptions::ttl(args.ttl).with_wait(Duration::from_secs(3600));
    let campaign_options = CampaignOptions::ttl(args.ttl);
    match args.mode.as_str() {
        "lock-rounds" => {
            for _ in 0..args.rounds {
                let guard = backend.acquire(&args.name, &lock_options).await?;
                println!("held {} {} {}", args.id, guard.token(), now_ns());
                bump_counter(&args.counter, args.hold).await?;
                if guard.is_lost() {
                    println!("lost {} {} {}", args.id, guard.token(), now_ns());
                }
                println!("freed {} {} {}", args.id, guard.token(), now_ns());
                guard.release().await?;
            }
            Ok(())
        }
        "elect-rounds" => {
            for _ in 0..args.rounds {
                let leadership = backend
                    .campaign(&args.name, &args.id, &campaign_options)
                    .await?;
                println!("held {} {} {}", args.id, leadership.term(), now_ns());
                bump_counter(&args.counter, args.hold).await?;
                if leadership.is_lost() {
                    println!("lost {} {} {}", args.id, leadership.term(), now_ns());
                }
                println!("freed {} {} {}", args.id, leadership.term(), now_ns());
                leadership.resign().await?;
            }
            Ok(())
        }
        "lock-hold" => {
            let guard = backend.acquire(&args.name, &lock_options).await?;
            println!("held {} {} {}", args.id, guard.token(), now_ns());
            let _loss = guard.lost().await;
            println!("lost {} {} {}", args.id, guard.token(), now_ns());
            Ok(())
        }
        "elect-hold" => {
            let leadership = backend
                .campaign(&args.name, &args.id, &campaign_options)
                .await?;
            println!("held {} {} {}", args.id, leadership.term(), now_ns());
            let _loss = leadership.lost().await;
            println!("lost {} {} {}", args.id, leadership.term(), now_ns());
            Ok(())
        }
        other => Err(Error::invalid_argument(format!("unknown mode {other:?}"))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    match args.backend.as_str() {
        "etcd" => {
            let backend = EtcdCoordinator::builder()
                .endpoints([args.address.clone()])
                .build()
                .await?;
            run(backend, &args).await
        }
        "nats" => {
            let backend = NatsCoordinator::builder()
                .servers([args.address.clone()])
                .build()
                .await?;
            run(backend, &args).await
        }
        other => Err(Error::invalid_argument(format!(
            "unknown backend {other:?}"
        ))),
    }
}
