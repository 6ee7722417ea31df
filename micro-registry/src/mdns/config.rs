use std::time::Duration;

use serde::{Deserialize, Serialize};

use micro_core::{duration, env::var as env_var};

use crate::Result;

/// The variable restricting mDNS to some interfaces: names or addresses, comma-separated.
pub const ENV_INTERFACES: &str = "MICRO_MDNS_INTERFACES";
/// The variable naming a network namespace to run the mDNS daemon in (Linux).
pub const ENV_NETNS: &str = "MICRO_MDNS_NETNS";
/// The variable setting the UDP port mDNS uses.
pub const ENV_PORT: &str = "MICRO_MDNS_PORT";
/// The variable setting the DNS-SD service type micro's services are announced under.
pub const ENV_SERVICE_TYPE: &str = "MICRO_MDNS_SERVICE_TYPE";
/// The variable setting how long a fresh registry waits for answers before `NotFound`.
pub const ENV_DISCOVERY_WAIT: &str = "MICRO_MDNS_DISCOVERY_WAIT";

/// Settings of an [`MdnsRegistry`](super::MdnsRegistry), with serde support so
/// they can come from a configuration file. Every field has a default.
///
/// ```
/// use micro_registry::mdns::MdnsConfig;
///
/// let config: MdnsConfig = serde_json::from_str(r#"{ "interfaces": ["lo"] }"#).unwrap();
/// assert_eq!(config.interfaces, ["lo"]);
/// assert_eq!(config.port, 5353);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MdnsConfig {
    /// The interfaces mDNS sends and listens on, by name (`lo`, `eth0`) or by
    /// one of their addresses (`127.0.0.1`). Empty (the default) means every
    /// interface that is up, loopback included.
    pub interfaces: Vec<String>,
    /// A network namespace to run the mDNS daemon in (Linux only): a name made
    /// with `ip netns add` or a path to a namespace file. Only the daemon's
    /// sockets live there; the rest of the process is untouched. Default: none.
    pub netns: Option<String>,
    /// The UDP port (default 5353, the mDNS port). Publishers and browsers must agree.
    pub port: u16,
    /// The DNS-SD service type every micro service is announced under
    /// (default `_micro._tcp.local.`); the micro service name travels in the
    /// TXT record, so one browse finds every service.
    pub service_type: String,
    /// How long a lookup in a freshly built registry waits for peers to
    /// answer before reporting `NotFound` (default `1.5s`; a humantime string
    /// in configuration files).
    #[serde(with = "micro_core::duration::serde")]
    pub discovery_wait: Duration,
}

impl MdnsConfig {
    /// The default service type.
    pub const DEFAULT_SERVICE_TYPE: &'static str = "_micro._tcp.local.";
    /// The default [`MdnsConfig::discovery_wait`].
    pub const DEFAULT_DISCOVERY_WAIT: Duration = Duration::from_millis(1500);

    /// The defaults overridden by `MICRO_MDNS_INTERFACES`, `MICRO_MDNS_NETNS`,
    /// `MICRO_MDNS_PORT`, `MICRO_MDNS_SERVICE_TYPE` and
    /// `MICRO_MDNS_DISCOVERY_WAIT` (`250ms`, `2s`, ...) where set.
    pub fn from_env() -> Result<MdnsConfig> {
        let mut config = MdnsConfig::default();
        if let Some(interfaces) = env_var(ENV_INTERFACES)? {
            config.interfaces = interfaces
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
        }
        config.netns = env_var(ENV_NETNS)?;
        if let Some(port) = env_var(ENV_PORT)? {
            config.port = port.parse().map_err(|_| {
                crate::Error::invalid_argument(format!("{ENV_PORT}={port:?} is not a UDP port"))
            })?;
        }
        if let Some(service_type) = env_var(ENV_SERVICE_TYPE)? {
            config.service_type = service_type;
        }
        if let Some(wait) = duration::from_env(ENV_DISCOVERY_WAIT)? {
            config.discovery_wait = wait;
        }
        Ok(config)
    }
}

impl Default for MdnsConfig {
    fn default() -> MdnsConfig {
        MdnsConfig {
            interfaces: Vec::new(),
            netns: None,
            port: mdns_sd::MDNS_PORT,
            service_type: MdnsConfig::DEFAULT_SERVICE_TYPE.to_owned(),
            discovery_wait: MdnsConfig::DEFAULT_DISCOVERY_WAIT,
        }
    }
}
