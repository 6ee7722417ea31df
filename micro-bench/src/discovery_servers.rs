//! The server-backed registries in the `discovery` measurements: etcd and
//! nats-server started here (`micro-test-servers`), and the Consul STAND-IN
//! (an in-process imitation of the agent's HTTP API; its figures say how the
//! backend behaves, not how fast a real Consul is).

use std::{sync::Arc, time::Duration};

use micro::{
    Result,
    registry::{DynRegistry, consul::ConsulRegistry, etcd::EtcdRegistry, nats::NatsRegistry},
};
use micro_test_servers::{ConsulStandIn, EtcdServer, NatsServer};

use crate::{discovery::Backend, discovery_procs::ProcessEnv};

/// The registry servers, alive for the whole run.
pub(crate) struct Servers {
    etcd: Option<EtcdServer>,
    nats: Option<NatsServer>,
    consul: ConsulStandIn,
}

impl Servers {
    /// Starts etcd and nats-server (each skipped, with a message, when its
    /// binary is missing) and a Consul stand-in.
    pub(crate) async fn start() -> Servers {
        Servers {
            etcd: EtcdServer::start().await,
            nats: NatsServer::start().await,
            consul: ConsulStandIn::start().await,
        }
    }
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}

fn etcd(endpoint: &str, prefix: &str) -> Result<DynRegistry> {
    Ok(Arc::new(
        EtcdRegistry::builder()
            .endpoints([endpoint])
            .prefix(prefix)
            .build()?,
    ))
}

fn nats(url: &str, bucket: &str) -> Result<DynRegistry> {
    Ok(Arc::new(
        NatsRegistry::builder()
            .servers([url])
            .bucket(bucket)
            .build()?,
    ))
}

fn consul(url: &str) -> Result<DynRegistry> {
    Ok(Arc::new(
        ConsulRegistry::builder()
            .address(url)
            .watch_wait(Duration::from_secs(30))
            .build()?,
    ))
}

/// A key prefix or bucket no earlier run used.
fn fresh(kind: &str) -> String {
    format!("bench_{kind}_{:08x}", rand::random::<u32>())
}

/// The etcd, NATS and Consul backends, each with two registries (separate
/// connections) that see each other and a two-process environment.
pub(crate) fn backends(servers: &Servers) -> Vec<Backend> {
    let mut backends = Vec::new();
    if let Some(server) = &servers.etcd {
        let (for_pair, for_processes) = (server.endpoint(), server.endpoint());
        backends.push(Backend {
            name: "etcd".to_owned(),
            pair: Box::new(move || {
                let endpoint = for_pair.clone();
                Box::pin(async move {
                    let prefix = format!("/{}/", fresh("etcd"));
                    Ok((etcd(&endpoint, &prefix)?, etcd(&endpoint, &prefix)?))
                })
            }),
            processes: Some(Box::new(move || {
                let endpoint = for_processes.clone();
                Box::pin(async move {
                    let prefix = format!("/{}/", fresh("etcd"));
                    let env = ProcessEnv {
                        both: vec![
                            pair("MICRO_REGISTRY", "etcd"),
                            pair("MICRO_REGISTRY_ADDRESS", &endpoint),
                            pair("MICRO_REGISTRY_PREFIX", &prefix),
                        ],
                        server: Vec::new(),
                    };
                    Ok((env, etcd(&endpoint, &prefix)?))
                })
            })),
        });
    }
    if let Some(server) = &servers.nats {
        let (for_pair, for_processes) = (server.url(), server.url());
        backends.push(Backend {
            name: "nats (JetStream KV)".to_owned(),
            pair: Box::new(move || {
                let url = for_pair.clone();
                Box::pin(async move {
                    let bucket = fresh("nats");
                    Ok((nats(&url, &bucket)?, nats(&url, &bucket)?))
                })
            }),
            processes: Some(Box::new(move || {
                let url = for_processes.clone();
                Box::pin(async move {
                    let bucket = fresh("nats");
                    let env = ProcessEnv {
                        both: vec![
                            pair("MICRO_REGISTRY", "nats"),
                            pair("MICRO_REGISTRY_ADDRESS", &url),
                            pair("MICRO_REGISTRY_BUCKET", &bucket),
                        ],
                        server: Vec::new(),
                    };
                    Ok((env, nats(&url, &bucket)?))
                })
            })),
        });
    }
    let for_pair = servers.consul.url();
    backends.push(Backend {
        name: "consul (STAND-IN, not a real agent)".to_owned(),
        pair: Box::new(move || {
            let url = for_pair.clone();
            Box::pin(async move { Ok((consul(&url)?, consul(&url)?)) })
        }),
        processes: Some(Box::new(|| {
            Box::pin(async {
                // A fresh agent per run: a killed server's node stays passing
                // until its TTL, and every run registers the same name. Leaked
                // on purpose: a few idle stand-ins live until the bench exits.
                let stand_in: &'static ConsulStandIn =
                    Box::leak(Box::new(ConsulStandIn::start().await));
                let url = stand_in.url();
                let env = ProcessEnv {
                    both: vec![
                        pair("MICRO_REGISTRY", "consul"),
                        pair("MICRO_REGISTRY_ADDRESS", &url),
                    ],
                    server: Vec::new(),
                };
                Ok((env, consul(&url)?))
            })
        })),
    });
    backends
}
