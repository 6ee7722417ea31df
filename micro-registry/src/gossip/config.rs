use std::time::Duration;

use serde::{Deserialize, Serialize};

use micro_core::{duration, env::var as env_var};

use crate::{Error, Result};

/// The variable listing seed peers (`host:port`, comma-separated). When unset,
/// `MICRO_REGISTRY_ADDRESS` is used.
pub const ENV_SEEDS: &str = "MICRO_GOSSIP_SEEDS";
/// The registry address variable, read for seeds when `MICRO_GOSSIP_SEEDS` is unset.
pub const ENV_REGISTRY_ADDRESS: &str = "MICRO_REGISTRY_ADDRESS";
/// The variable setting the UDP address this node gossips on.
pub const ENV_LISTEN: &str = "MICRO_GOSSIP_LISTEN";
/// The variable setting the address peers reach this node at.
pub const ENV_ADVERTISE: &str = "MICRO_GOSSIP_ADVERTISE";
/// The variable naming the cluster; nodes of other clusters are ignored.
pub const ENV_CLUSTER: &str = "MICRO_GOSSIP_CLUSTER";
/// The variable setting the gossip interval (`1s`, `100ms`, ...).
pub const ENV_INTERVAL: &str = "MICRO_GOSSIP_INTERVAL";
/// The variable setting the failure detector's phi threshold.
pub const ENV_PHI_THRESHOLD: &str = "MICRO_GOSSIP_PHI_THRESHOLD";
/// The variable setting how long a fresh registry waits for peers before `NotFound`.
pub const ENV_DISCOVERY_WAIT: &str = "MICRO_GOSSIP_DISCOVERY_WAIT";

/// Settings of a [`GossipRegistry`](super::GossipRegistry), with serde support
/// so they can come from a configuration file. Every field has a default.
///
/// Failure detection: a peer is declared dead when no news of it (its
/// heartbeat rises every gossip round) has arrived for about
/// `phi_threshold` times the mean interval between its heartbeats, that mean
/// starting from `gossip_interval`. With the defaults (1 s, 8) a killed
/// peer's services disappear after roughly 8 to 10 seconds, well inside the
/// default 30-second registration TTL. Tests shorten the interval.
///
/// ```
/// use micro_registry::gossip::GossipConfig;
///
/// let config: GossipConfig = serde_json::from_str(
///     r#"{ "listen": "127.0.0.1:7946", "seeds": ["127.0.0.1:7947"], "gossip_interval": "200ms" }"#,
/// ).unwrap();
/// assert_eq!(config.seeds, ["127.0.0.1:7947"]);
/// assert_eq!(config.phi_threshold, 8.0);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GossipConfig {
    /// The UDP address to gossip on (default `127.0.0.1:0`; port 0 picks a
    /// free port). Use a routable address for a cluster spanning hosts.
    pub listen: String,
    /// The address peers reach this node at; default: the listen address.
    pub advertise: Option<String>,
    /// Peers to join through (`host:port`). Any live member will do; a node
    /// with no seeds starts a cluster of its own that others can join.
    pub seeds: Vec<String>,
    /// The cluster name (default `micro`): nodes ignore peers of another cluster.
    pub cluster: String,
    /// This node's name in the cluster; default: a random one.
    pub node_id: Option<String>,
    /// The time between gossip rounds (default `1s`; a humantime string in
    /// configuration files).
    #[serde(with = "micro_core::duration::serde")]
    pub gossip_interval: Duration,
    /// How many mean heartbeat intervals of silence make a peer dead (default 8).
    pub phi_threshold: f64,
    /// How long a lookup in a freshly started registry waits for peers'
    /// state before reporting `NotFound` (default `3s`).
    #[serde(with = "micro_core::duration::serde")]
    pub discovery_wait: Duration,
}

impl GossipConfig {
    /// The default [`GossipConfig::listen`].
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:0";
    /// The default [`GossipConfig::cluster`].
    pub const DEFAULT_CLUSTER: &'static str = "micro";
    /// The default [`GossipConfig::gossip_interval`].
    pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_secs(1);
    /// The default [`GossipConfig::phi_threshold`].
    pub const DEFAULT_PHI_THRESHOLD: f64 = 8.0;
    /// The default [`GossipConfig::discovery_wait`].
    pub const DEFAULT_DISCOVERY_WAIT: Duration = Duration::from_secs(3);

    /// The defaults overridden by `MICRO_GOSSIP_SEEDS` (else
    /// `MICRO_REGISTRY_ADDRESS`), `MICRO_GOSSIP_LISTEN`, `MICRO_GOSSIP_ADVERTISE`,
    /// `MICRO_GOSSIP_CLUSTER`, `MICRO_GOSSIP_INTERVAL`,
    /// `MICRO_GOSSIP_PHI_THRESHOLD` and `MICRO_GOSSIP_DISCOVERY_WAIT` where set.
    pub fn from_env() -> Result<GossipConfig> {
        let mut config = GossipConfig::default();
        let seeds = match env_var(ENV_SEEDS)? {
            Some(seeds) => Some(seeds),
            None => env_var(ENV_REGISTRY_ADDRESS)?,
        };
        if let Some(seeds) = seeds {
            config.seeds = split_list(&seeds);
        }
        if let Some(listen) = env_var(ENV_LISTEN)? {
            config.listen = listen;
        }
        config.advertise = env_var(ENV_ADVERTISE)?;
        if let Some(cluster) = env_var(ENV_CLUSTER)? {
            config.cluster = cluster;
        }
        if let Some(interval) = duration::from_env(ENV_INTERVAL)? {
            config.gossip_interval = interval;
        }
        if let Some(phi) = env_var(ENV_PHI_THRESHOLD)? {
            config.phi_threshold = phi.parse().map_err(|_| {
                Error::invalid_argument(format!("{ENV_PHI_THRESHOLD}={phi:?} is not a number"))
            })?;
        }
        if let Some(wait) = duration::from_env(ENV_DISCOVERY_WAIT)? {
            config.discovery_wait = wait;
        }
        Ok(config)
    }

    pub(super) fn validate(&self) -> Result<()> {
        if self.gossip_interval.is_zero() {
            return Err(Error::invalid_argument(
                "the gossip interval must be above zero",
            ));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(Error::invalid_argument(format!(
                "the phi threshold must be a positive number, not {}",
                self.phi_threshold
            )));
        }
        if self.cluster.is_empty() {
            return Err(Error::invalid_argument("the gossip cluster name is empty"));
        }
        Ok(())
    }
}

/// `a, b,,c` as `[a, b, c]`.
pub(super) fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Default for GossipConfig {
    fn default() -> GossipConfig {
        GossipConfig {
            listen: GossipConfig::DEFAULT_LISTEN.to_owned(),
            advertise: None,
            seeds: Vec::new(),
            cluster: GossipConfig::DEFAULT_CLUSTER.to_owned(),
            node_id: None,
            gossip_interval: GossipConfig::DEFAULT_GOSSIP_INTERVAL,
            phi_threshold: GossipConfig::DEFAULT_PHI_THRESHOLD,
            discovery_wait: GossipConfig::DEFAULT_DISCOVERY_WAIT,
        }
    }
}
