//! Locks and elections across real processes on real servers.
//!
//! For etcd and for NATS, `micro-sync-contender` processes:
//! 1. contend for one lock for several rounds each, then for one role; every
//!    holding is printed with wall-clock timestamps and bumps a counter in a
//!    file with a non-atomic read-wait-write. The test asserts that no two
//!    holdings overlap, that fencing tokens grow in holding order, and that
//!    the counter lost no update;
//! 2. wait on one lock (then one role) while one holds it; the test SIGKILLs
//!    the holder, waits for another process to take over, and repeats. It
//!    asserts the takeover happens and its token is larger, and prints how
//!    long each takeover took (no timing assertion: the machine is shared).
//!
//! Run with `--nocapture` to see the figures.

use std::{collections::HashMap, path::Path, process::Stdio, time::Duration};

use micro_test_servers::{EtcdServer, NatsServer};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

const PROCESSES: usize = 3;
const ROUNDS: u32 = 6;
const HOLD_MS: u64 = 15;
/// The TTL while taking turns: long, so a noisy machine cannot make a
/// holder lose its lock mid-holding (the test would report it).
const ROUNDS_TTL_MS: u64 = 10_000;
/// The TTL of the holders that get killed: what failover waits out.
const KILL_TTL_MS: u64 = 2_000;
const KILLS: usize = 2;
const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One printed event of a contender.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    what: String,
    id: String,
    token: u64,
    at_ns: u128,
}

fn parse(line: &str) -> Event {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [what, id, token, at] = fields.as_slice() else {
        panic!("unexpected contender output {line:?}");
    };
    Event {
        what: (*what).to_owned(),
        id: (*id).to_owned(),
        token: token
            .parse()
            .unwrap_or_else(|_| panic!("bad token in {line:?}")),
        at_ns: at
            .parse()
            .unwrap_or_else(|_| panic!("bad time in {line:?}")),
    }
}

struct Contenders {
    children: HashMap<String, Child>,
    events: mpsc::UnboundedReceiver<Event>,
}

fn spawn(
    backend: &str,
    address: &str,
    mode: &str,
    name: &str,
    rounds: u32,
    ttl_ms: u64,
    counter: &Path,
) -> Contenders {
    let (sender, events) = mpsc::unbounded_channel();
    let mut children = HashMap::new();
    for index in 0..PROCESSES {
        let id = format!("p{index}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_micro-sync-contender"))
            .args([backend, address, mode, name, &id])
            .arg(rounds.to_string())
            .arg(HOLD_MS.to_string())
            .arg(ttl_ms.to_string())
            .arg(counter)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning micro-sync-contender");
        let stdout = child.stdout.take().expect("piped stdout");
        let sender = sender.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if sender.send(parse(&line)).is_err() {
                    return;
                }
            }
        });
        children.insert(id, child);
    }
    Contenders { children, events }
}

impl Contenders {
    async fn next_event(&mut self) -> Event {
        match tokio::time::timeout(EVENT_TIMEOUT, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("every contender's output closed"),
            Err(_) => panic!("no contender event within {EVENT_TIMEOUT:?}"),
        }
    }

    async fn wait_all_succeed(&mut self) {
        for (id, child) in &mut self.children {
            let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
                .await
                .unwrap_or_else(|_| panic!("{id} did not finish its rounds"))
                .expect("waiting for a contender");
            assert!(status.success(), "{id} failed: {status}");
        }
    }
}

/// Phase 1: turns. Returns the number of holdings checked.
async fn take_turns(backend: &str, address: &str, mode: &str) -> usize {
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = dir.path().join("counter");
    let name = format!("turns-{:08x}", rand::random::<u32>());
    let mut contenders = spawn(
        backend,
        address,
        mode,
        &name,
        ROUNDS,
        ROUNDS_TTL_MS,
        &counter,
    );
    let expected = PROCESSES * ROUNDS as usize;
    let mut starts: HashMap<(String, u64), u128> = HashMap::new();
    let mut intervals = Vec::new();
    while intervals.len() < expected {
        let event = contenders.next_event().await;
        match event.what.as_str() {
            "held" => {
                starts.insert((event.id, event.token), event.at_ns);
            }
            "freed" => {
                let start = starts
                    .remove(&(event.id.clone(), event.token))
                    .unwrap_or_else(|| panic!("freed without held: {event:?}"));
                intervals.push((start, event.at_ns, event.token, event.id));
            }
            "lost" => panic!("{backend} {mode}: a holder lost its hold mid-turn: {event:?}"),
            other => panic!("unknown event {other}"),
        }
    }
    contenders.wait_all_succeed().await;

    intervals.sort();
    for pair in intervals.windows(2) {
        let ((_, end, token, id), (start, _, next_token, next_id)) = (&pair[0], &pair[1]);
        assert!(
            end < start,
            "{backend} {mode}: {id} (token {token}) held until {end} but {next_id} (token {next_token}) took over at {start}"
        );
        assert!(
            token < next_token,
            "{backend} {mode}: fencing tokens must grow: {token} then {next_token}"
        );
    }
    let count: usize = std::fs::read_to_string(&counter)
        .expect("counter file")
        .trim()
        .parse()
        .expect("counter value");
    assert_eq!(
        count, expected,
        "{backend} {mode}: the counter lost updates"
    );
    let mut per_process: HashMap<&str, usize> = HashMap::new();
    for (_, _, _, id) in &intervals {
        *per_process.entry(id).or_default() += 1;
    }
    assert_eq!(per_process.len(), PROCESSES, "every process got its turns");
    expected
}

/// Phase 2: SIGKILL the holder `KILLS` times. Returns each takeover time.
async fn kill_holders(backend: &str, address: &str, mode: &str) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = format!("kill-{:08x}", rand::random::<u32>());
    let mut contenders = spawn(
        backend,
        address,
        mode,
        &name,
        1,
        KILL_TTL_MS,
        &dir.path().join("unused"),
    );
    let mut holder = contenders.next_event().await;
    assert_eq!(holder.what, "held", "{holder:?}");
    let mut takeovers = Vec::new();
    for _ in 0..KILLS {
        let child = contenders
            .children
            .get_mut(&holder.id)
            .expect("the holder is one of ours");
        let killed_at = now_ns();
        child.start_kill().expect("SIGKILL the holder");
        child.wait().await.expect("reaping the holder");
        let next = contenders.next_event().await;
        assert_eq!(next.what, "held", "{backend} {mode}: {next:?}");
        assert_ne!(next.id, holder.id, "a killed process cannot take over");
        assert!(
            next.token > holder.token,
            "the new holder's token must be larger"
        );
        assert!(
            next.at_ns > killed_at,
            "nobody may take over before the kill"
        );
        takeovers.push(Duration::from_nanos(
            u64::try_from(next.at_ns - killed_at).unwrap_or(u64::MAX),
        ));
        holder = next;
    }
    takeovers
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0)
}

async fn drill(backend: &str, address: &str) {
    for (turns, hold) in [("lock-rounds", "lock-hold"), ("elect-rounds", "elect-hold")] {
        let holdings = take_turns(backend, address, turns).await;
        eprintln!(
            "{backend} {turns}: {PROCESSES} processes x {ROUNDS} rounds = {holdings} holdings, none overlapping, counter exact"
        );
        let takeovers = kill_holders(backend, address, hold).await;
        eprintln!(
            "{backend} {hold}: SIGKILL of the holder -> takeover after {takeovers:?} (TTL {KILL_TTL_MS} ms)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_processes_never_overlap_and_take_over_after_sigkill() {
    let Some(etcd) = EtcdServer::shared().await else {
        return;
    };
    drill("etcd", &etcd.endpoint()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_processes_never_overlap_and_take_over_after_sigkill() {
    let Some(nats) = NatsServer::shared().await else {
        return;
    };
    drill("nats", &nats.url()).await;
}
