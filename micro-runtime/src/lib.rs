//! micro's runtime: fetch a service's source, build it, run it, keep it
//! running, stop it, read its logs.
//!
//! [`Runtime`] is the trait; a service is described by a [`ServiceSpec`]
//! (where its code is, which cargo target, its environment, its
//! [`RestartPolicy`]) and goes through create → build → start → stop →
//! delete, with [`status`](Runtime::status), [`list`](Runtime::list) and
//! [`logs`](Runtime::logs) at any time. The spec is plain serde data and the
//! trait says nothing about processes, so a Kubernetes backend can map the
//! same calls onto images and Deployments.
//!
//! # Quick start
//!
//! A service from a local cargo project, run and stopped (the doc test
//! builds a tiny crate, so it is not run here; `tests/` do the real thing):
//!
//! ```no_run
//! use futures::StreamExt;
//! use micro_runtime::{LogOptions, Runtime, ServiceSpec, Source, local::LocalRuntime};
//!
//! # async fn example() -> micro_runtime::Result<()> {
//! let runtime = LocalRuntime::builder().release(false).build();
//! runtime
//!     .create(
//!         ServiceSpec::new("worker", Source::Git { url: "file:///srv/git/worker".into(), reference: None })
//!             .with_env("MICRO_REGISTRY", "etcd"),
//!     )
//!     .await?;
//! runtime.build("worker").await?;
//! runtime.start("worker").await?;
//! let mut logs = runtime.logs("worker", &LogOptions::follow()).await?;
//! while let Some(line) = logs.next().await {
//!     let line = line?;
//!     if line.text.contains("listening on") {
//!         break;
//!     }
//! }
//! runtime.stop("worker").await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Backends
//!
//! | backend | scheme | status |
//! |---|---|---|
//! | [`local`] | `local` | child processes with restart, bounded logs, graceful stop |
//! | kubernetes | `kubernetes` | planned |
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `local` | yes | [`local::LocalRuntime`] (Unix) |

#[cfg(feature = "local")]
pub mod local;

mod runtime;

pub use micro_core::{BoxError, Error, ErrorKind, Result};
pub use runtime::{
    DynRuntime, LogLine, LogOptions, LogSource, LogStream, RestartMode, RestartPolicy, Runtime,
    ServiceSpec, ServiceStatus, Source, State, Target,
};
