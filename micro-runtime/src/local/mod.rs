//! The local backend: every service is a child process of this one.
//!
//! - **Sources**: a [`Source::Path`] is built in place;
//!   a [`Source::Git`] URL (including `file://`) is cloned
//!   into [`LocalConfig::workdir`]`/<name>`.
//! - **Builds**: `cargo build` of the chosen package and target, with a
//!   shared target directory if [`LocalConfig::target_dir`] is set; cargo's
//!   diagnostics go to the service's log.
//! - **Environment**: this process's, then [`LocalConfig::env`], then the
//!   spec's `env`, plus `MICRO_SERVICE_NAME=<name>`.
//! - **Supervision**: a crash (by default: any unsuccessful exit) is followed
//!   by a restart after an exponential backoff, per the spec's
//!   [`RestartPolicy`](crate::RestartPolicy).
//! - **Logs**: stdout and stderr, line by line, into a bounded buffer of
//!   [`LocalConfig::log_lines`] per service, which can be followed.
//! - **Stopping**: SIGTERM to the service's process group, SIGKILL after
//!   [`LocalConfig::grace_period`].
//! - **No orphans**: each service runs in its own process group. Dropping
//!   the last handle to the runtime SIGKILLs every group at once;
//!   [`LocalRuntime::shutdown`] stops them gracefully first. (A runtime that
//!   is itself SIGKILLed cannot clean up: its services then live on.)
//!
//! Unix only (process groups and signals).

mod build;
mod config;
mod logs;
mod process;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;

pub use self::config::LocalConfig;
use self::process::{Launch, Service};
use crate::{
    Error, LogOptions, LogStream, Result, Runtime, ServiceSpec, ServiceStatus, Source, State,
    runtime::validate_name,
};

/// The variable every service is given its name in.
pub const ENV_SERVICE_NAME: &str = "MICRO_SERVICE_NAME";

/// Runs services as supervised child processes. Cloning gives another handle
/// to the same services; when the last handle is dropped, every service's
/// process group is killed.
///
/// ```no_run
/// use micro_runtime::{LogOptions, Runtime, ServiceSpec, Source, Target, local::LocalRuntime};
///
/// # async fn example() -> micro_runtime::Result<()> {
/// let runtime = LocalRuntime::builder().release(false).build();
/// let spec = ServiceSpec::new("greeter", Source::Path("/src/micro".into()))
///     .with_package("micro-examples")
///     .with_target(Target::Example("greeter_server".into()))
///     .with_env("MICRO_REGISTRY", "nats");
/// runtime.create(spec).await?;
/// runtime.build("greeter").await?;
/// runtime.start("greeter").await?;
/// let logs = runtime.logs("greeter", &LogOptions::follow()).await?;
/// # drop(logs);
/// runtime.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: LocalConfig,
    services: Mutex<BTreeMap<String, Arc<Service>>>,
}

/// Builds a [`LocalRuntime`].
#[derive(Debug, Clone, Default)]
pub struct LocalRuntimeBuilder {
    config: LocalConfig,
}

impl LocalRuntimeBuilder {
    /// Where git sources are checked out.
    pub fn workdir(mut self, dir: impl Into<std::path::PathBuf>) -> LocalRuntimeBuilder {
        self.config.workdir = dir.into();
        self
    }

    /// The cargo target directory builds share.
    pub fn target_dir(mut self, dir: impl Into<std::path::PathBuf>) -> LocalRuntimeBuilder {
        self.config.target_dir = Some(dir.into());
        self
    }

    /// Build with `--release` or not.
    pub fn release(mut self, release: bool) -> LocalRuntimeBuilder {
        self.config.release = release;
        self
    }

    /// How long a stopping service gets after SIGTERM.
    pub fn grace_period(mut self, grace: std::time::Duration) -> LocalRuntimeBuilder {
        self.config.grace_period = grace;
        self
    }

    /// An environment variable for every service.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> LocalRuntimeBuilder {
        self.config.env.insert(name.into(), value.into());
        self
    }

    /// The runtime.
    pub fn build(self) -> LocalRuntime {
        LocalRuntime::new(self.config)
    }
}

impl LocalRuntime {
    /// A runtime with these settings.
    pub fn new(config: LocalConfig) -> LocalRuntime {
        LocalRuntime {
            inner: Arc::new(Inner {
                config,
                services: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A builder, starting from the defaults of [`LocalConfig`].
    pub fn builder() -> LocalRuntimeBuilder {
        LocalRuntimeBuilder::default()
    }

    /// A runtime with settings from the environment (see [`LocalConfig::from_env`]).
    pub fn from_env() -> LocalRuntime {
        LocalRuntime::new(LocalConfig::from_env())
    }

    /// Stops every service gracefully and waits for them.
    pub async fn shutdown(&self) {
        let services: Vec<Arc<Service>> = self.inner.lock().values().cloned().collect();
        futures::future::join_all(services.iter().map(|service| service.stop())).await;
    }

    fn service(&self, name: &str) -> Result<Arc<Service>> {
        self.inner
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("no service named {name:?}")))
    }

    fn launch(&self, service: &Service) -> Result<Launch> {
        let executable = service.executable().ok_or_else(|| {
            Error::failed_precondition(format!("{} has not been built", service.spec.name))
        })?;
        let mut env: Vec<(String, String)> = self
            .inner
            .config
            .env
            .iter()
            .chain(&service.spec.env)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push((ENV_SERVICE_NAME.to_owned(), service.spec.name.clone()));
        Ok(Launch {
            executable,
            env,
            grace: self.inner.config.grace_period,
        })
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Service>>> {
        // Inserts and removes only: never half done.
        self.services.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for service in self.lock().values() {
            service.kill_now();
        }
    }
}

impl fmt::Debug for LocalRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRuntime")
            .field("config", &self.inner.config)
            .field("services", &self.inner.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn scheme(&self) -> &'static str {
        "local"
    }

    async fn create(&self, spec: ServiceSpec) -> Result<()> {
        validate_name(&spec.name)?;
        let config = &self.inner.config;
        let dir = build::source_dir(config, &spec);
        let fetched = matches!(spec.source, Source::Git { .. });
        let name = spec.name.clone();
        let service = Arc::new(Service::new(spec, dir, fetched, config.log_lines));
        {
            let mut services = self.inner.lock();
            if services.contains_key(&name) {
                return Err(Error::already_exists(format!(
                    "a service named {name:?} exists"
                )));
            }
            services.insert(name.clone(), Arc::clone(&service));
        }
        let fetched_source = async {
            if let Source::Git { url, reference } = &service.spec.source {
                build::clone(
                    config,
                    url,
                    reference.as_deref(),
                    &service.dir,
                    &service.logs,
                )
                .await?;
            }
            build::check_source(&service.dir).await
        };
        if let Err(err) = fetched_source.await {
            self.inner.lock().remove(&name);
            return Err(err.context(format!("creating {name}")));
        }
        Ok(())
    }

    async fn build(&self, name: &str) -> Result<()> {
        let service = self.service(name)?;
        if !service.is_supervised() {
            service.set_state(State::Building);
        }
        match build::cargo_build(
            &self.inner.config,
            &service.spec,
            &service.dir,
            &service.logs,
        )
        .await
        {
            Ok(executable) => {
                service
                    .logs
                    .note(format!("{name}: built {}", executable.display()));
                service.set_built(executable);
                Ok(())
            }
            Err(err) => {
                if !service.is_supervised() {
                    service.set_state(State::Failed);
                }
                Err(err)
            }
        }
    }

    async fn start(&self, name: &str) -> Result<()> {
        let service = self.service(name)?;
        let launch = self.launch(&service)?;
        service.start(launch).await
    }

    async fn stop(&self, name: &str) -> Result<()> {
        self.service(name)?.stop().await;
        Ok(())
    }

    async fn restart(&self, name: &str) -> Result<()> {
        let service = self.service(name)?;
        let launch = self.launch(&service)?;
        service.stop().await;
        service.start(launch).await
    }

    async fn status(&self, name: &str) -> Result<ServiceStatus> {
        Ok(self.service(name)?.status())
    }

    async fn list(&self) -> Result<Vec<ServiceStatus>> {
        let services: Vec<Arc<Service>> = self.inner.lock().values().cloned().collect();
        Ok(services.iter().map(|service| service.status()).collect())
    }

    async fn logs(&self, name: &str, options: &LogOptions) -> Result<LogStream> {
        Ok(self.service(name)?.logs.stream(options))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let service = self.service(name)?;
        service.stop().await;
        self.inner.lock().remove(name);
        if service.fetched {
            tokio::fs::remove_dir_all(&service.dir)
                .await
                .or_else(|err| {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(Error::from(err))
                    }
                })?;
        }
        Ok(())
    }
}
