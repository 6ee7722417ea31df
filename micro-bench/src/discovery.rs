//! `micro-bench -- N discovery`: what service discovery costs, per registry
//! backend, with the in-process memory registry as the peer every backend is
//! compared with.
//!
//! - a cached lookup (`CachingRegistry::get_service`), against the backend's
//!   own uncached lookup;
//! - register to watcher: from `register` on one registry to the `Create` on
//!   another registry's watch (two daemons / members for mdns and gossip);
//! - SIGKILL to removal: a `greeter_server` process registered with a 3 s TTL
//!   and 1 s interval is killed; time until an observer's watch says `Delete`;
//! - first call by name: from starting `greeter_server` to `greeter_client`
//!   (a separate process, finding the server by name) printing the reply,
//!   against the same with the client given the server's address.
//!
//! # Adding a backend
//!
//! Push one more [`Backend`] in [`backends`]: a name, a function making two
//! registries on the backend that see each other, and a function making the
//! variables of a two-process run plus an observer registry that sees what
//! those processes register (isolated from earlier runs: a fresh prefix,
//! bucket, cluster or namespace).

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, future::BoxFuture};
use micro::{
    Error, Result,
    registry::{
        CachingRegistry, DynRegistry, EventKind, Node, RegisterOptions, Registry, Service,
        WatchOptions, gossip::GossipRegistry, mdns::MdnsRegistry, memory::MemoryRegistry,
    },
};
use tokio::time::Instant;

use crate::{
    discovery_procs::{Binaries, Netns, ProcessEnv, Server, free_udp_address, run_client},
    measure, nanos,
};

/// The service name the examples register.
const GREETER: &str = "greeter";
/// Registration timings of the server in the SIGKILL measurement.
const KILL_TTL: Duration = Duration::from_secs(3);
const KILL_INTERVAL: Duration = Duration::from_secs(1);
/// How long any awaited event may take before the run counts as failed.
const WAIT: Duration = Duration::from_secs(60);
/// Gossip interval used throughout (the default is 1 s).
const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);

type Pair = BoxFuture<'static, Result<(DynRegistry, DynRegistry)>>;
type Processes = BoxFuture<'static, Result<(ProcessEnv, DynRegistry)>>;

/// One registry backend under measurement.
pub(crate) struct Backend {
    pub(crate) name: String,
    /// Two registries on the backend: the first registers, the second watches.
    pub(crate) pair: Box<dyn Fn() -> Pair>,
    /// Variables for a two-process run and an observer seeing its registrations;
    /// `None` for a backend that cannot span processes (memory).
    pub(crate) processes: Option<Box<dyn Fn() -> Processes>>,
}

/// The backends measured; the memory backend first, as the peer.
fn backends(netns: Option<&Arc<Netns>>) -> Vec<Backend> {
    let mut backends = vec![Backend {
        name: "memory".to_owned(),
        pair: Box::new(|| {
            Box::pin(async {
                let registry: DynRegistry = Arc::new(MemoryRegistry::new());
                Ok((registry.clone(), registry))
            })
        }),
        processes: None,
    }];
    if let Some(netns) = netns {
        let for_pair = Arc::clone(netns);
        let for_processes = Arc::clone(netns);
        backends.push(Backend {
            name: "mdns".to_owned(),
            pair: Box::new(move || {
                let netns = Arc::clone(&for_pair);
                Box::pin(async move { Ok((mdns(&netns)?, mdns(&netns)?)) })
            }),
            processes: Some(Box::new(move || {
                let netns = Arc::clone(&for_processes);
                Box::pin(async move {
                    let env = ProcessEnv {
                        both: vec![
                            pair("MICRO_REGISTRY", "mdns"),
                            pair("MICRO_MDNS_NETNS", &netns.name),
                            pair("MICRO_MDNS_INTERFACES", "lo"),
                        ],
                        server: Vec::new(),
                    };
                    Ok((env, mdns(&netns)?))
                })
            })),
        });
    }
    backends.push(Backend {
        name: format!("gossip ({} ms rounds)", GOSSIP_INTERVAL.as_millis()),
        pair: Box::new(|| {
            Box::pin(async {
                let first = gossip(&[])?;
                let seed = first.listen_address().to_string();
                let first: DynRegistry = Arc::new(first);
                let second: DynRegistry = Arc::new(gossip(&[seed])?);
                Ok((first, second))
            })
        }),
        processes: Some(Box::new(|| {
            Box::pin(async {
                let seed = free_udp_address()?;
                let cluster = format!("bench-{:08x}", rand::random::<u32>());
                let env = ProcessEnv {
                    both: vec![
                        pair("MICRO_REGISTRY", "gossip"),
                        pair("MICRO_REGISTRY_ADDRESS", &seed),
                        pair("MICRO_GOSSIP_CLUSTER", &cluster),
                        pair(
                            "MICRO_GOSSIP_INTERVAL",
                            &format!("{}ms", GOSSIP_INTERVAL.as_millis()),
                        ),
                    ],
                    server: vec![pair("MICRO_GOSSIP_LISTEN", &seed)],
                };
                let observer = GossipRegistry::builder()
                    .seeds([seed])
                    .cluster(cluster)
                    .gossip_interval(GOSSIP_INTERVAL)
                    .build()?;
                Ok((env, Arc::new(observer) as DynRegistry))
            })
        })),
    });
    backends
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

fn mdns(netns: &Netns) -> Result<DynRegistry> {
    Ok(Arc::new(
        MdnsRegistry::builder()
            .netns(&netns.name)
            .interfaces(["lo"])
            .build()?,
    ))
}

fn gossip(seeds: &[String]) -> Result<GossipRegistry> {
    GossipRegistry::builder()
        .seeds(seeds.iter().cloned())
        .cluster("bench-pairs")
        .gossip_interval(GOSSIP_INTERVAL)
        .build()
}

/// Runs every measurement on every backend and prints the table.
pub(crate) async fn run(seconds: u64) -> Result<()> {
    let repeats = usize::try_from(seconds.clamp(1, 20)).unwrap_or(3) * 3;
    let netns = match Netns::create() {
        Ok(netns) => Some(Arc::new(netns)),
        Err(err) => {
            println!("mdns skipped: {err}");
            None
        }
    };
    let binaries = Binaries::build()?;
    println!(
        "discovery: {repeats} register-to-watch samples, {} process runs per backend; \
         memory is the in-process peer\n",
        repeats.div_ceil(3)
    );
    let servers = crate::discovery_servers::Servers::start().await;
    let mut all = backends(netns.as_ref());
    all.extend(crate::discovery_servers::backends(&servers));
    for backend in all {
        println!("== {}", backend.name);
        cached_lookup(&backend).await?;
        register_to_watch(&backend, repeats).await?;
        if let Some(processes) = &backend.processes {
            sigkill_to_removal(processes.as_ref(), &binaries, repeats.div_ceil(3)).await?;
            first_call(processes.as_ref(), &binaries, repeats.div_ceil(3)).await?;
        }
        println!();
    }
    Ok(())
}

fn one_node(name: &str) -> Service {
    Service::new(name)
        .with_version("1.0.0")
        .with_node(Node::new(format!("{name}-1"), "127.0.0.1:4000"))
}

async fn cached_lookup(backend: &Backend) -> Result<()> {
    const LOOKUPS: u32 = 200_000;
    const UNCACHED_LOOKUPS: u32 = 2_000;
    let (registry, _) = (backend.pair)().await?;
    let name = format!("bench-lookup-{:08x}", rand::random::<u32>());
    registry
        .register(&one_node(&name), &RegisterOptions::default())
        .await?;
    let cached = CachingRegistry::new(registry.clone());
    cached.get_service(&name).await?;
    let (cached_cost, cached_errors) = measure::per_call_cost(LOOKUPS, || {
        let cached = &cached;
        let name = &name;
        async move { cached.get_service(name).await.is_ok() }
    })
    .await;
    // Fewer uncached lookups: on server backends each is a network round trip.
    let (raw_cost, raw_errors) = measure::per_call_cost(UNCACHED_LOOKUPS, || {
        let registry = &registry;
        let name = &name;
        async move { registry.get_service(name).await.is_ok() }
    })
    .await;
    println!(
        "  lookup: cached {:>7.0} ns, uncached backend {:>7.0} ns, cached/uncached = {:.3}  errors {}",
        nanos(cached_cost),
        nanos(raw_cost),
        cached_cost.as_secs_f64() / raw_cost.as_secs_f64().max(f64::MIN_POSITIVE),
        cached_errors + raw_errors
    );
    registry.deregister(&one_node(&name)).await
}

async fn register_to_watch(backend: &Backend, repeats: usize) -> Result<()> {
    let (publisher, watcher) = (backend.pair)().await?;
    let mut samples = Vec::with_capacity(repeats);
    for i in 0..repeats {
        let name = format!("bench-watch-{:08x}-{i}", rand::random::<u32>());
        let mut changes = watcher.watch(&WatchOptions::service(&name)).await?;
        let started = Instant::now();
        publisher
            .register(&one_node(&name), &RegisterOptions::default())
            .await?;
        wait_for(&mut changes, EventKind::Create).await?;
        samples.push(started.elapsed());
        publisher.deregister(&one_node(&name)).await?;
    }
    print_samples(
        "register -> other registry's watch sees Create",
        &mut samples,
    );
    Ok(())
}

async fn sigkill_to_removal(
    processes: &dyn Fn() -> Processes,
    binaries: &Binaries,
    runs: usize,
) -> Result<()> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (env, observer) = processes().await?;
        let mut changes = observer.watch(&WatchOptions::service(GREETER)).await?;
        let mut server = Server::start(binaries, &env, KILL_TTL, KILL_INTERVAL).await?;
        wait_for(&mut changes, EventKind::Create).await?;
        let killed = Instant::now();
        server.kill().await;
        wait_for(&mut changes, EventKind::Delete).await?;
        samples.push(killed.elapsed());
    }
    print_samples(
        &format!(
            "SIGKILL -> observer's watch sees Delete (TTL {KILL_TTL:?}, interval {KILL_INTERVAL:?})"
        ),
        &mut samples,
    );
    Ok(())
}

async fn first_call(
    processes: &dyn Fn() -> Processes,
    binaries: &Binaries,
    runs: usize,
) -> Result<()> {
    let mut by_name = Vec::with_capacity(runs);
    let mut by_address = Vec::with_capacity(runs);
    for _ in 0..runs {
        for named in [true, false] {
            let (env, _observer) = processes().await?;
            let started = Instant::now();
            let mut server = Server::start(
                binaries,
                &env,
                Duration::from_secs(30),
                Duration::from_secs(10),
            )
            .await?;
            let address = (!named).then_some(server.address.as_str());
            run_client(binaries, &env, address).await?;
            let elapsed = started.elapsed();
            if named {
                by_name.push(elapsed);
            } else {
                by_address.push(elapsed);
            }
            server.kill().await;
        }
    }
    let name_median = median(&mut by_name);
    let address_median = median(&mut by_address);
    print_samples(
        "server start -> client process's first call BY NAME returns",
        &mut by_name,
    );
    print_samples(
        "server start -> client process's first call BY ADDRESS returns (peer)",
        &mut by_address,
    );
    println!(
        "    ratio by name / by address (medians) = {:.2}",
        name_median.as_secs_f64() / address_median.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    Ok(())
}

async fn wait_for(changes: &mut micro::registry::WatchStream, kind: EventKind) -> Result<()> {
    tokio::time::timeout(WAIT, async {
        loop {
            match changes.next().await {
                Some(Ok(event)) if event.kind == kind => return Ok(()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return Err(err),
                None => return Err(Error::unavailable("the watch ended")),
            }
        }
    })
    .await
    .map_err(|_| Error::timeout(format!("no {kind:?} within {WAIT:?}")))?
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn print_samples(what: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    let at = |q: f64| {
        let rank = ((samples.len().saturating_sub(1)) as f64 * q).round() as usize;
        samples.get(rank).copied().unwrap_or_default()
    };
    println!(
        "  {what}: median {:.1} ms, p90 {:.1} ms, max {:.1} ms (n={})",
        millis(at(0.5)),
        millis(at(0.9)),
        millis(at(1.0)),
        samples.len()
    );
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}
