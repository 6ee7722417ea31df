//! Choosing backends from the environment, so moving a service from one
//! machine to production changes variables, not code.
//!
//! | variable | values | default |
//! |---|---|---|
//! | `MICRO_REGISTRY` | `memory`, `mdns`, `gossip`, `etcd`, `nats`, `consul` | `memory` |
//! | `MICRO_REGISTRY_ADDRESS` | the registry server's address (ignored by `memory`) | |
//! | `MICRO_BROKER` | `memory`, `http`, `nats` | `memory` |
//! | `MICRO_BROKER_ADDRESS` | the broker server's address (ignored by `memory`) | |
//! | `MICRO_TRANSPORT` | `memory`, `http`, `grpc` | `http` |
//! | `MICRO_TRANSPORT_ADDRESS` | the address a service listens on | `127.0.0.1:0` (a free port) |
//! | `MICRO_REGISTER_TTL` | how long a service's registration lives unless renewed (`30s`, `1.5s`, `1500ms`: a number with a unit) | `30s` |
//! | `MICRO_REGISTER_INTERVAL` | how often a service renews it; shorter than the TTL | `10s`, or a third of `MICRO_REGISTER_TTL` |
//!
//! Names are case-insensitive; an empty variable counts as unset. Each backend
//! needs its cargo feature of `micro` (`registry-etcd`, `broker-nats`,
//! `transport-grpc`, ...): naming one whose feature this build does not
//! include is a `FailedPrecondition` error naming the feature, and an unknown
//! name is an `InvalidArgument` error listing the known ones.
//!
//! ```
//! use std::collections::HashMap;
//! use micro::{ErrorKind, env::EnvConfig};
//!
//! // Reads a map here; EnvConfig::from_env() reads the process environment.
//! let vars = HashMap::from([("MICRO_TRANSPORT", "memory")]);
//! let config = EnvConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string()))?;
//! assert_eq!(config.transport.name, "memory");
//! assert_eq!(config.registry.name, "memory");
//!
//! // (An unknown name; a known one whose feature is off would be FailedPrecondition.)
//! let vars = HashMap::from([("MICRO_REGISTRY", "zookeeper")]);
//! let err = EnvConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::InvalidArgument);
//! assert!(err.message().contains("etcd"));
//! # Ok::<(), micro::Error>(())
//! ```

use std::{sync::Arc, time::Duration};

use crate::{
    Error, Result,
    broker::DynBroker,
    registry::{CachingRegistry, DynRegistry},
    transport::DynTransport,
};

/// The variable naming the registry backend.
pub const REGISTRY: &str = "MICRO_REGISTRY";
/// The variable giving the registry server's address.
pub const REGISTRY_ADDRESS: &str = "MICRO_REGISTRY_ADDRESS";
/// The variable naming the broker backend.
pub const BROKER: &str = "MICRO_BROKER";
/// The variable giving the broker server's address.
pub const BROKER_ADDRESS: &str = "MICRO_BROKER_ADDRESS";
/// The variable naming the transport backend.
pub const TRANSPORT: &str = "MICRO_TRANSPORT";
/// The variable giving the address a service listens on.
pub const TRANSPORT_ADDRESS: &str = "MICRO_TRANSPORT_ADDRESS";
/// The variable setting how long a service's registration lives unless renewed.
pub const REGISTER_TTL: &str = "MICRO_REGISTER_TTL";
/// The variable setting how often a service renews its registration.
pub const REGISTER_INTERVAL: &str = "MICRO_REGISTER_INTERVAL";
/// The variable naming where a service serves `/metrics` and `/health/*`.
pub const ADMIN_ADDRESS: &str = "MICRO_ADMIN_ADDRESS";

/// A backend micro knows by name, and whether this build includes it.
struct Known {
    name: &'static str,
    feature: &'static str,
    compiled: bool,
}

const REGISTRIES: [Known; 6] = [
    Known {
        name: "memory",
        feature: "registry-memory",
        compiled: cfg!(feature = "registry-memory"),
    },
    Known {
        name: "mdns",
        feature: "registry-mdns",
        compiled: cfg!(feature = "registry-mdns"),
    },
    Known {
        name: "gossip",
        feature: "registry-gossip",
        compiled: cfg!(feature = "registry-gossip"),
    },
    Known {
        name: "etcd",
        feature: "registry-etcd",
        compiled: cfg!(feature = "registry-etcd"),
    },
    Known {
        name: "nats",
        feature: "registry-nats",
        compiled: cfg!(feature = "registry-nats"),
    },
    Known {
        name: "consul",
        feature: "registry-consul",
        compiled: cfg!(feature = "registry-consul"),
    },
];

const BROKERS: [Known; 3] = [
    Known {
        name: "memory",
        feature: "broker-memory",
        compiled: cfg!(feature = "broker-memory"),
    },
    Known {
        name: "http",
        feature: "broker-http",
        compiled: cfg!(feature = "broker-http"),
    },
    Known {
        name: "nats",
        feature: "broker-nats",
        compiled: cfg!(feature = "broker-nats"),
    },
];

const TRANSPORTS: [Known; 3] = [
    Known {
        name: "memory",
        feature: "transport-memory",
        compiled: cfg!(feature = "transport-memory"),
    },
    Known {
        name: "http",
        feature: "transport-http",
        compiled: cfg!(feature = "transport-http"),
    },
    Known {
        name: "grpc",
        feature: "transport-grpc",
        compiled: cfg!(feature = "transport-grpc"),
    },
];

/// One chosen backend: its name and the address given for it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChoice {
    /// The backend's name, lower-case (`memory`, `http`, `etcd`, ...).
    pub name: String,
    /// The `..._ADDRESS` variable's value, if set.
    pub address: Option<String>,
}

/// The backends chosen by the environment; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvConfig {
    /// From `MICRO_REGISTRY` and `MICRO_REGISTRY_ADDRESS`.
    pub registry: BackendChoice,
    /// From `MICRO_BROKER` and `MICRO_BROKER_ADDRESS`.
    pub broker: BackendChoice,
    /// From `MICRO_TRANSPORT` and `MICRO_TRANSPORT_ADDRESS` (the listen address).
    pub transport: BackendChoice,
    /// From `MICRO_REGISTER_TTL`: a service's registration TTL, unless set on its builder.
    pub register_ttl: Option<Duration>,
    /// From `MICRO_REGISTER_INTERVAL`: a service's re-register interval, unless set on its builder.
    pub register_interval: Option<Duration>,
    /// From `MICRO_ADMIN_ADDRESS`: where a service serves its admin listener
    /// ([`micro::admin`](crate::admin)), unless set on its builder.
    pub admin_address: Option<String>,
}

impl Default for EnvConfig {
    /// What an empty environment gives: memory registry, memory broker, HTTP transport.
    fn default() -> EnvConfig {
        EnvConfig {
            registry: default_choice("memory"),
            broker: default_choice("memory"),
            transport: default_choice("http"),
            register_ttl: None,
            register_interval: None,
            admin_address: None,
        }
    }
}

impl EnvConfig {
    /// Reads the process environment. A variable that is not valid Unicode is
    /// an `InvalidArgument` error.
    pub fn from_env() -> Result<EnvConfig> {
        for name in [
            REGISTRY,
            REGISTRY_ADDRESS,
            BROKER,
            BROKER_ADDRESS,
            TRANSPORT,
            TRANSPORT_ADDRESS,
            REGISTER_TTL,
            REGISTER_INTERVAL,
        ] {
            if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(name) {
                return Err(Error::invalid_argument(format!(
                    "{name} is not valid Unicode"
                )));
            }
        }
        EnvConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (a map in tests, the environment in
    /// [`from_env`](EnvConfig::from_env)) and checks that every backend named
    /// is known and compiled in. (Defaults are checked when built.)
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<EnvConfig> {
        Ok(EnvConfig {
            registry: choose(&lookup, REGISTRY, REGISTRY_ADDRESS, "memory", &REGISTRIES)?,
            broker: choose(&lookup, BROKER, BROKER_ADDRESS, "memory", &BROKERS)?,
            transport: choose(&lookup, TRANSPORT, TRANSPORT_ADDRESS, "http", &TRANSPORTS)?,
            register_ttl: duration(&lookup, REGISTER_TTL)?,
            register_interval: duration(&lookup, REGISTER_INTERVAL)?,
            admin_address: lookup(ADMIN_ADDRESS).filter(|address| !address.trim().is_empty()),
        })
    }

    /// The chosen registry, uncached.
    pub fn registry(&self) -> Result<DynRegistry> {
        build_registry(&self.registry)
    }

    /// The chosen broker. The `http` broker finds its peers in the chosen
    /// registry (built here); [`broker_with_registry`](EnvConfig::broker_with_registry)
    /// hands it one already built.
    pub fn broker(&self) -> Result<DynBroker> {
        #[cfg(feature = "broker-http")]
        if self.broker.name == "http" {
            return build_http_broker(&self.broker, self.registry()?);
        }
        build_broker(&self.broker)
    }

    /// The chosen broker; the `http` broker finds its peers in `registry`
    /// (a service passes its own, so its subscriptions and its lookups use
    /// the registry it registers in). Other brokers ignore `registry`.
    pub fn broker_with_registry(&self, registry: DynRegistry) -> Result<DynBroker> {
        #[cfg(feature = "broker-http")]
        if self.broker.name == "http" {
            return build_http_broker(&self.broker, registry);
        }
        let _ = registry;
        build_broker(&self.broker)
    }

    /// The chosen transport.
    pub fn transport(&self) -> Result<DynTransport> {
        build_transport(&self.transport)
    }

    /// The address a service listens on, if `MICRO_TRANSPORT_ADDRESS` gave one.
    pub fn listen_address(&self) -> Option<&str> {
        self.transport.address.as_deref()
    }
}

/// A duration variable in the one grammar of [`micro_core::duration`]
/// (`1.5s`, `250ms`, `1m`); unset or empty is `None`, zero or a bare number
/// without a unit is `InvalidArgument` naming the variable.
fn duration(lookup: &impl Fn(&str) -> Option<String>, variable: &str) -> Result<Option<Duration>> {
    let Some(text) = lookup(variable).filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed = micro_core::duration::parse_named(variable, &text)?;
    if parsed.is_zero() {
        return Err(Error::invalid_argument(format!(
            "{variable}={:?} is zero; it must be above zero",
            text.trim()
        )));
    }
    Ok(Some(parsed))
}

fn choose(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &str,
    address_variable: &str,
    default: &str,
    known: &[Known],
) -> Result<BackendChoice> {
    let set = |name: &str| {
        lookup(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    // A backend named explicitly is checked now; a default one only when it
    // is built, so that a build without it still works when the caller
    // supplies that building block itself.
    let name = match set(variable) {
        Some(value) => {
            let name = value.to_ascii_lowercase();
            check_known(variable, &name, known)?;
            name
        }
        None => default.to_owned(),
    };
    Ok(BackendChoice {
        name,
        address: set(address_variable),
    })
}

fn check_known(variable: &str, name: &str, known: &[Known]) -> Result<()> {
    match known.iter().find(|backend| backend.name == name) {
        Some(backend) if backend.compiled => Ok(()),
        Some(backend) => Err(Error::failed_precondition(format!(
            "{variable}={name} needs micro's cargo feature `{}`, which this build does not include",
            backend.feature
        ))),
        None => {
            let names: Vec<&str> = known.iter().map(|backend| backend.name).collect();
            Err(Error::invalid_argument(format!(
                "{variable}={name:?} is not a known backend; known: {}",
                names.join(", ")
            )))
        }
    }
}

#[cfg(any(
    feature = "registry-memory",
    feature = "broker-memory",
    feature = "registry-mdns"
))]
fn ignored_address(variable: &str, choice: &BackendChoice) {
    if let Some(address) = &choice.address {
        tracing::warn!(
            "{variable}={address:?} is ignored: the {} backend has no server",
            choice.name
        );
    }
}

fn build_registry(choice: &BackendChoice) -> Result<DynRegistry> {
    check_known(REGISTRY, &choice.name, &REGISTRIES)?;
    match choice.name.as_str() {
        #[cfg(feature = "registry-memory")]
        "memory" => {
            ignored_address(REGISTRY_ADDRESS, choice);
            Ok(Arc::new(crate::registry::memory::MemoryRegistry::shared()))
        }
        #[cfg(feature = "registry-mdns")]
        "mdns" => {
            ignored_address(REGISTRY_ADDRESS, choice);
            Ok(Arc::new(crate::registry::mdns::MdnsRegistry::from_env()?))
        }
        #[cfg(feature = "registry-gossip")]
        "gossip" => {
            use crate::registry::gossip::{GossipConfig, GossipRegistry};
            // MICRO_GOSSIP_SEEDS wins; else the registry address lists the seeds.
            let mut config = GossipConfig::from_env()?;
            if let (true, Some(seeds)) = (config.seeds.is_empty(), &choice.address) {
                config.seeds = seeds
                    .split(',')
                    .map(str::trim)
                    .filter(|seed| !seed.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            Ok(Arc::new(GossipRegistry::from_config(&config)?))
        }
        #[cfg(feature = "registry-etcd")]
        "etcd" => {
            let config = crate::registry::etcd::EtcdConfig::from_lookup(registry_lookup(choice))?;
            Ok(Arc::new(crate::registry::etcd::EtcdRegistry::from_config(
                config,
            )?))
        }
        #[cfg(feature = "registry-nats")]
        "nats" => {
            let config = crate::registry::nats::NatsConfig::from_lookup(registry_lookup(choice))?;
            Ok(Arc::new(crate::registry::nats::NatsRegistry::from_config(
                config,
            )?))
        }
        #[cfg(feature = "registry-consul")]
        "consul" => {
            let config =
                crate::registry::consul::ConsulConfig::from_lookup(registry_lookup(choice))?;
            Ok(Arc::new(
                crate::registry::consul::ConsulRegistry::from_config(config)?,
            ))
        }
        other => Err(not_built(REGISTRY, other)),
    }
}

/// The variables a server-backed registry reads: the process environment,
/// except that the address is the one chosen (`choice.address`).
#[cfg(any(
    feature = "registry-etcd",
    feature = "registry-nats",
    feature = "registry-consul"
))]
fn registry_lookup(choice: &BackendChoice) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        if name == REGISTRY_ADDRESS {
            choice.address.clone()
        } else {
            std::env::var(name).ok()
        }
    }
}

fn build_broker(choice: &BackendChoice) -> Result<DynBroker> {
    check_known(BROKER, &choice.name, &BROKERS)?;
    match choice.name.as_str() {
        #[cfg(feature = "broker-memory")]
        "memory" => {
            ignored_address(BROKER_ADDRESS, choice);
            Ok(Arc::new(
                crate::broker::memory::MemoryBroker::shared_from_env()?,
            ))
        }
        #[cfg(feature = "broker-nats")]
        "nats" => {
            // MICRO_BROKER_NATS_*, MICRO_BROKER_ADDRESS and MICRO_NATS_* (micro-connect);
            // the broker connects on first use.
            let mut config = crate::broker::nats::NatsConfig::from_env()?;
            if let Some(address) = &choice.address {
                config.connection.servers = address
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            Ok(Arc::new(
                crate::broker::nats::NatsBroker::builder()
                    .config(config)
                    .build(),
            ))
        }
        other => Err(not_built(BROKER, other)),
    }
}

/// The http broker: MICRO_BROKER_ADDRESS is where its endpoint listens (other
/// settings from the `MICRO_BROKER_*` variables of `HttpConfig::from_env`).
#[cfg(feature = "broker-http")]
fn build_http_broker(choice: &BackendChoice, registry: DynRegistry) -> Result<DynBroker> {
    check_known(BROKER, &choice.name, &BROKERS)?;
    let mut config = crate::broker::http::HttpConfig::from_env()?;
    if let Some(address) = &choice.address {
        config.address = address.clone();
    }
    Ok(Arc::new(
        crate::broker::http::HttpBroker::builder(registry)
            .config(config)
            .build(),
    ))
}

fn build_transport(choice: &BackendChoice) -> Result<DynTransport> {
    check_known(TRANSPORT, &choice.name, &TRANSPORTS)?;
    match choice.name.as_str() {
        #[cfg(feature = "transport-memory")]
        "memory" => Ok(Arc::new(crate::transport::memory::MemoryTransport::new())),
        #[cfg(feature = "transport-http")]
        "http" => Ok(Arc::new(
            crate::transport::http::HttpTransport::from_config(
                crate::transport::http::HttpConfig::from_env()?,
            ),
        )),
        #[cfg(feature = "transport-grpc")]
        "grpc" => Ok(Arc::new(crate::transport::grpc::GrpcTransport::from_env()?)),
        other => Err(not_built(TRANSPORT, other)),
    }
}

/// A backend that is known and compiled in but that this function cannot
/// build: only reachable if the tables above and the builders disagree.
fn not_built(variable: &str, name: &str) -> Error {
    Error::internal(format!(
        "{variable}={name} is compiled in but micro cannot build it; please report this"
    ))
}

fn default_choice(name: &str) -> BackendChoice {
    BackendChoice {
        name: name.to_owned(),
        address: None,
    }
}

/// The registry as a client looks services up: through a watch-fed cache.
pub(crate) fn cached(registry: DynRegistry) -> CachingRegistry<DynRegistry> {
    CachingRegistry::new(registry)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    fn config(vars: &[(&str, &str)]) -> Result<EnvConfig> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EnvConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_gives_memory_memory_http() {
        let config = config(&[]).unwrap();
        assert_eq!(config, EnvConfig::default());
        assert_eq!(config.registry, default_choice("memory"));
        assert_eq!(config.broker, default_choice("memory"));
        assert_eq!(config.transport, default_choice("http"));
        assert_eq!(config.listen_address(), None);
    }

    #[test]
    fn names_are_trimmed_case_insensitive_and_empty_means_unset() {
        let config = config(&[
            (TRANSPORT, " Memory "),
            (TRANSPORT_ADDRESS, "memory://orders"),
            (REGISTRY, ""),
            (BROKER_ADDRESS, "  "),
        ])
        .unwrap();
        assert_eq!(config.transport.name, "memory");
        assert_eq!(config.listen_address(), Some("memory://orders"));
        assert_eq!(config.registry.name, "memory");
        assert_eq!(config.broker.address, None);
    }

    #[test]
    fn known_backends_without_their_feature_name_the_feature() {
        for (variable, name, feature) in [
            (REGISTRY, "etcd", "registry-etcd"),
            (REGISTRY, "mdns", "registry-mdns"),
            (REGISTRY, "gossip", "registry-gossip"),
            (REGISTRY, "nats", "registry-nats"),
            (REGISTRY, "consul", "registry-consul"),
            (BROKER, "nats", "broker-nats"),
            (BROKER, "http", "broker-http"),
            (TRANSPORT, "grpc", "transport-grpc"),
        ] {
            let built = REGISTRIES
                .iter()
                .chain(&BROKERS)
                .chain(&TRANSPORTS)
                .any(|known| known.feature == feature && known.compiled);
            if built {
                continue;
            }
            let err = config(&[(variable, name)]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::FailedPrecondition, "{err}");
            assert!(err.message().contains(feature), "{err}");
            assert!(err.message().contains(variable), "{err}");
        }
    }

    #[cfg(feature = "broker-nats")]
    #[test]
    fn nats_broker_from_the_environment_connects_on_first_use() {
        let config = config(&[
            (BROKER, "nats"),
            (BROKER_ADDRESS, "nats://127.0.0.1:1, nats://127.0.0.1:2"),
        ])
        .unwrap();
        let broker = config.broker().unwrap();
        assert_eq!(broker.scheme(), "nats");
    }

    #[test]
    fn unknown_backends_list_the_known_ones() {
        let err = config(&[(REGISTRY, "zookeeper")]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        for known in ["memory", "mdns", "gossip", "etcd", "nats", "consul"] {
            assert!(err.message().contains(known), "{err}");
        }
        let err = config(&[(TRANSPORT, "carrier-pigeon")]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("grpc"), "{err}");
    }

    #[tokio::test]
    async fn chosen_backends_are_built_with_their_schemes() {
        let config = config(&[(TRANSPORT, "memory")]).unwrap();
        assert_eq!(config.registry().unwrap().scheme(), "memory");
        assert_eq!(config.broker().unwrap().scheme(), "memory");
        assert_eq!(config.transport().unwrap().scheme(), "memory");
        assert_eq!(EnvConfig::default().transport().unwrap().scheme(), "http");
    }

    #[test]
    fn register_timing_parses_durations() {
        let timing = config(&[(REGISTER_TTL, "3s"), (REGISTER_INTERVAL, "750ms")]).unwrap();
        assert_eq!(timing.register_ttl, Some(std::time::Duration::from_secs(3)));
        assert_eq!(
            timing.register_interval,
            Some(std::time::Duration::from_millis(750))
        );
        assert_eq!(config(&[]).unwrap().register_ttl, None);
        // The issue's example: fractions with a unit work.
        let timing = config(&[(REGISTER_TTL, "1.5s")]).unwrap();
        assert_eq!(
            timing.register_ttl,
            Some(std::time::Duration::from_millis(1500))
        );
        // A bare number has no unit: refused, naming the variable.
        for bad in ["0s", "soon", "3 parsecs", "-1s", "1500"] {
            let err = config(&[(REGISTER_TTL, bad)]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(err.message().contains(REGISTER_TTL), "{err}");
        }
    }

    #[cfg(all(
        feature = "registry-etcd",
        feature = "registry-nats",
        feature = "registry-consul"
    ))]
    #[test]
    fn server_registries_are_built_with_the_chosen_address() {
        for (name, address, shown) in [
            ("etcd", "http://127.0.0.1:2999", "http://127.0.0.1:2999"),
            ("nats", "nats://127.0.0.1:4999", "nats://127.0.0.1:4999"),
            ("consul", "127.0.0.1:8999", "http://127.0.0.1:8999"),
        ] {
            let config = config(&[(REGISTRY, name), (REGISTRY_ADDRESS, address)]).unwrap();
            // Connecting waits for first use, so nothing needs to listen there.
            let registry = config.registry().unwrap();
            assert_eq!(registry.scheme(), name);
            assert!(format!("{registry:?}").contains(shown), "{registry:?}");
        }
        let err = config(&[(REGISTRY, "consul"), (REGISTRY_ADDRESS, "ftp://x")])
            .unwrap()
            .registry()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
