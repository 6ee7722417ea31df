use std::{collections::BTreeMap, fmt, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use async_trait::async_trait;
use futures::stream::BoxStream;
use micro_core::Backoff;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Source {
    /// A directory holding a cargo package or workspace, used in place.
    Path(PathBuf),
    /// A git repository (`https://…`, `ssh://…`, `file://…`), cloned at
    /// `reference` (a branch or tag; `None`: the default branch).
    Git {
        /// The repository URL.
        url: String,
        /// The branch or tag to check out.
        #[serde(default)]
        reference: Option<String>,
    },
}

/// Which cargo target of the source is the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// The package's only binary.
    #[default]
    Default,
    /// A `[[bin]]` by name.
    Bin(String),
    /// An example by name.
    Example(String),
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RestartMode {
    /// Never.
    Never,
    /// When it exits unsuccessfully or is killed by a signal.
    #[default]
    OnFailure,
    /// Whenever it exits, unless it was stopped.
    Always,
}

/// How a crashed service is restarted: exponential backoff from `initial_backoff`,
/// doubling up to `max_backoff`, at most `max_restarts` times in a row; a run
/// that lasted `reset_after` starts the count and the backoff afresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RestartPolicy {
    /// When to restart. Default: on failure.
    pub mode: RestartMode,
    /// The most restarts in a row before giving up (`None`: no limit). Default: 10.
    pub max_restarts: Option<u32>,
    /// The first delay. Default: `100ms`.
    #[serde(with = "micro_core::duration::serde")]
    pub initial_backoff: Duration,
    /// The longest delay. Default: `30s`.
    #[serde(with = "micro_core::duration::serde")]
    pub max_backoff: Duration,
    /// How long a run must last to reset the backoff. Default: `10s`.
    #[serde(with = "micro_core::duration::serde")]
    pub reset_after: Duration,
}

impl RestartPolicy {
    /// Never restart.
    pub fn never() -> RestartPolicy {
        RestartPolicy {
            mode: RestartMode::Never,
            ..RestartPolicy::default()
        }
    }

    /// The delay before restart number `attempt` (0-based) in a row:
    /// [`Backoff::exponential`] from `initial_backoff` to `max_backoff`,
    /// without jitter (one process restarting has nobody to collide with).
    pub fn backoff(&self, attempt: u32) -> Duration {
        Backoff::exponential(self.initial_backoff, self.max_backoff)
            .without_jitter()
            .delay(attempt)
    }
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            mode: RestartMode::OnFailure,
            max_restarts: Some(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// What to run: the description a runtime creates a service from. Serde
/// support lets it come from a file; a Kubernetes backend would map it onto
/// a Deployment (image build from `source`, `env`, restart policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// The service's name: 1 to 63 characters from `a-z 0-9 -`, starting
    /// with a letter (a DNS label, so every backend can use it as is).
    pub name: String,
    /// Where the code comes from.
    pub source: Source,
    /// The cargo package in a workspace (`-p`); `None`: the root package.
    #[serde(default)]
    pub package: Option<String>,
    /// Which target to run.
    #[serde(default)]
    pub target: Target,
    /// Arguments passed to the service.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables on top of the runtime's (`MICRO_REGISTRY`, …).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// What happens when it exits.
    #[serde(default)]
    pub restart: RestartPolicy,
}

impl ServiceSpec {
    /// A spec for `name` from `source`, with defaults for the rest.
    pub fn new(name: impl Into<String>, source: Source) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            source,
            package: None,
            target: Target::Default,
            args: Vec::new(),
            env: BTreeMap::new(),
            restart: RestartPolicy::default(),
        }
    }

    /// Runs this target.
    pub fn with_target(mut self, target: Target) -> ServiceSpec {
        self.target = target;
        self
    }

    /// Builds this package of a workspace.
    pub fn with_package(mut self, package: impl Into<String>) -> ServiceSpec {
        self.package = Some(package.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> ServiceSpec {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Adds an argument.
    pub fn with_arg(mut self, arg: impl Into<String>) -> ServiceSpec {
        self.args.push(arg.into());
        self
    }

    /// Restarts by this policy.
    pub fn with_restart(mut self, restart: RestartPolicy) -> ServiceSpec {
        self.restart = restart;
        self
    }
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Its source is in place; not built yet.
    Created,
    /// Being built.
    Building,
    /// Built; not running.
    Built,
    /// Running.
    Running,
    /// Exited and waiting out a backoff before restarting.
    Backoff,
    /// Exited and will not be restarted (by policy, or restarts exhausted).
    Exited,
    /// Stopped on request.
    Stopped,
    /// The build failed.
    Failed,
}

/// A service's current status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// Where it is in its life.
    pub state: State,
    /// The running process's id (local backend), while running.
    pub pid: Option<u32>,
    /// How many times it was restarted after exiting, since it was started.
    pub restarts: u32,
    /// How its last run ended (`exit status: 1`, `signal: 9 (SIGKILL)`), if it ended.
    pub last_exit: Option<String>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogSource {
    /// The service's standard output.
    Stdout,
    /// The service's standard error.
    Stderr,
    /// The runtime, about the service: build output, starts, exits, restarts.
    Runtime,
}

/// One line of a service's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogLine {
    /// When the runtime read it.
    pub at: SystemTime,
    /// Where it came from.
    pub source: LogSource,
    /// The line, without its newline.
    pub text: String,
}

/// Which log lines to stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// Only the last this many buffered lines (`None`: all that are buffered).
    pub tail: Option<usize>,
    /// Keep streaming new lines as they come, until the stream is dropped.
    pub follow: bool,
}

impl LogOptions {
    /// Buffered lines, then new ones as they come.
    pub fn follow() -> LogOptions {
        LogOptions {
            tail: None,
            follow: true,
        }
    }
}

/// A service's log lines. A follower that falls behind the buffer gets one
/// `ResourceExhausted` item saying how many lines it missed, then continues.
pub type LogStream = BoxStream<'static, Result<LogLine>>;

/// Fetches, builds, runs and supervises services.
///
/// The life of a service: [`create`](Runtime::create) (fetch its source),
/// [`build`](Runtime::build), [`start`](Runtime::start) (the runtime keeps it
/// running by its restart policy), [`stop`](Runtime::stop), and
/// [`delete`](Runtime::delete). Unknown names are `NotFound`; creating a name
/// twice is `AlreadyExists`; starting an unbuilt service is `FailedPrecondition`.
///
/// `Arc<T>` and `Box<T>` forward the trait, so [`DynRuntime`] is a runtime too.
#[async_trait]
pub trait Runtime: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend (`local`, later `kubernetes`).
    fn scheme(&self) -> &'static str;

    /// Takes a service in: fetches its source.
    async fn create(&self, spec: ServiceSpec) -> Result<()>;

    /// Builds the service (cargo). Build output goes to its log.
    async fn build(&self, name: &str) -> Result<()>;

    /// Starts the service and keeps it running by its restart policy;
    /// returns once it runs. Starting a running service is a no-op.
    async fn start(&self, name: &str) -> Result<()>;

    /// Stops the service gracefully (for the local backend SIGTERM, then
    /// SIGKILL after the grace period). Stopping a stopped service is a no-op.
    async fn stop(&self, name: &str) -> Result<()>;

    /// Stops then starts the service.
    async fn restart(&self, name: &str) -> Result<()>;

    /// The service's status.
    async fn status(&self, name: &str) -> Result<ServiceStatus>;

    /// Every service's status, by name.
    async fn list(&self) -> Result<Vec<ServiceStatus>>;

    /// The service's log lines.
    async fn logs(&self, name: &str, options: &LogOptions) -> Result<LogStream>;

    /// Stops the service and forgets it (and, where the runtime fetched
    /// it, its source).
    async fn delete(&self, name: &str) -> Result<()>;
}

/// A shared, type-erased runtime.
pub type DynRuntime = Arc<dyn Runtime>;

macro_rules! forward_runtime {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Runtime + ?Sized> Runtime for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            async fn create(&self, spec: ServiceSpec) -> Result<()> {
                (**self).create(spec).await
            }
            async fn build(&self, name: &str) -> Result<()> {
                (**self).build(name).await
            }
            async fn start(&self, name: &str) -> Result<()> {
                (**self).start(name).await
            }
            async fn stop(&self, name: &str) -> Result<()> {
                (**self).stop(name).await
            }
            async fn restart(&self, name: &str) -> Result<()> {
                (**self).restart(name).await
            }
            async fn status(&self, name: &str) -> Result<ServiceStatus> {
                (**self).status(name).await
            }
            async fn list(&self) -> Result<Vec<ServiceStatus>> {
                (**self).list().await
            }
            async fn logs(&self, name: &str, options: &LogOptions) -> Result<LogStream> {
                (**self).logs(name, options).await
            }
            async fn delete(&self, name: &str) -> Result<()> {
                (**self).delete(name).await
            }
        }
    };
}

forward_runtime!(Arc);
forward_runtime!(Box);

/// Service names: valid names ([`micro_core::name::validate`]) that are
/// also DNS labels, so a Kubernetes backend can use them as they are.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    micro_core::name::validate("service", name)?;
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(crate::Error::invalid_argument(format!(
            "a service name is 1 to 63 characters from a-z 0-9 -, starting with a letter, got {name:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RestartPolicy::default()
        };
        let delays: Vec<u64> = (0..6)
            .map(|n| policy.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(200), Duration::from_millis(1000));
    }

    #[test]
    fn names_are_dns_labels() {
        for good in ["greeter", "a", "svc-2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Greeter", "-a", "a-", "1a", "a_b", &"a".repeat(64)] {
            assert_eq!(
                validate_name(bad).unwrap_err().kind(),
                crate::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn specs_round_trip_through_serde() {
        let spec = ServiceSpec::new(
            "greeter",
            Source::Git {
                url: "file:///tmp/repo".into(),
                reference: None,
            },
        )
        .with_target(Target::Example("greeter_server".into()))
        .with_env("MICRO_REGISTRY", "etcd");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), spec);
    }
}
