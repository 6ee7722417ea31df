//! The etcd backend: every hold is an etcd lease kept alive by keep-alive,
//! locks use etcd's Lock API and elections its Election API, so a process
//! using etcd's own tools (`etcdctl lock`, `etcdctl elect`) on the same names
//! takes part in the same locks and elections.
//!
//! Keys live under a prefix (default `micro/sync/`): a lock `name` is
//! `<prefix>lock/<name>/<lease>`, a candidate for `role` is
//! `<prefix>election/<role>/<lease>`. Waiters queue in etcd in the order they
//! arrived; the first key by creation revision holds.
//!
//! TTLs are whole seconds in etcd (and at least its minimum lease TTL, about
//! 2 s with default settings); the guard still counts the TTL you asked for
//! when deciding it may have lost the hold, which is the safe side.
//!
//! Fencing tokens are etcd revisions: the lock's is the store revision at
//! which it was granted, a leader's term the creation revision of its key.

mod config;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use etcd_client::{Client, GetOptions, LeaseKeepAliveStream, LeaseKeeper, SortOrder, SortTarget};
use futures::StreamExt;
use tokio::time::Instant;

pub use self::config::EtcdConfig;
use crate::{
    CampaignOptions, Capabilities, Election, Error, ErrorKind, Hold, Leader, LeaderStream,
    Leadership, Lease, Lock, LockGuard, LockOptions, Renewal, Result, election::validate_campaign,
    lock::validate_lock,
};

/// The etcd [`Lock`] and [`Election`] backend. Cloning shares the connection.
///
/// ```no_run
/// use micro_sync::{Lock, LockOptions, etcd::EtcdCoordinator};
///
/// # async fn example() -> micro_sync::Result<()> {
/// let etcd = EtcdCoordinator::builder()
///     .endpoints(["http://127.0.0.1:2379"])
///     .build()
///     .await?;
/// let guard = etcd.acquire("nightly-report", &LockOptions::default()).await?;
/// // ... only one process at a time runs this ...
/// guard.release().await
/// # }
/// ```
#[derive(Clone)]
pub struct EtcdCoordinator {
    client: Client,
    config: Arc<EtcdConfig>,
}

/// Builds an [`EtcdCoordinator`].
#[derive(Debug, Clone, Default)]
pub struct EtcdCoordinatorBuilder {
    config: EtcdConfig,
}

impl EtcdCoordinatorBuilder {
    /// The endpoints to connect to.
    pub fn endpoints<I, S>(mut self, endpoints: I) -> EtcdCoordinatorBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.connection.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Where to connect and how to authenticate: the settings every etcd
    /// backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::etcd::EtcdConfig,
    ) -> EtcdCoordinatorBuilder {
        self.config.connection = connection;
        self
    }

    /// The key prefix (see [`EtcdConfig::prefix`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> EtcdCoordinatorBuilder {
        self.config.prefix = prefix.into();
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> EtcdCoordinatorBuilder {
        self.config.connection.connect_timeout = timeout;
        self
    }

    /// Connects.
    pub async fn build(self) -> Result<EtcdCoordinator> {
        EtcdCoordinator::connect(self.config).await
    }
}

impl EtcdCoordinator {
    /// A builder, starting from the defaults of [`EtcdConfig`].
    pub fn builder() -> EtcdCoordinatorBuilder {
        EtcdCoordinatorBuilder::default()
    }

    /// Connects with settings from the environment (see [`EtcdConfig::from_env`]).
    pub async fn from_env() -> Result<EtcdCoordinator> {
        EtcdCoordinator::connect(EtcdConfig::from_env()?).await
    }

    /// Connects with these settings.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdCoordinator> {
        config.validate()?;
        let options = config
            .connection
            .options()?
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = config.connection.connect_with(options).await?;
        EtcdCoordinator::with_client(client, config)
    }

    /// Uses a client already connected (shared with other etcd backends of
    /// the process); `config.connection` is then not used.
    pub fn with_client(client: Client, config: EtcdConfig) -> Result<EtcdCoordinator> {
        config.validate()?;
        Ok(EtcdCoordinator {
            client,
            config: Arc::new(config),
        })
    }

    fn lock_key(&self, name: &str) -> String {
        format!("{}lock/{name}", self.config.prefix)
    }

    fn role_key(&self, role: &str) -> String {
        format!("{}election/{role}", self.config.prefix)
    }

    /// Grants a lease for `ttl`, rounded up to whole seconds.
    async fn grant(&self, ttl: Duration) -> Result<EtcdLease> {
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let seconds = i64::try_from(seconds.max(1)).unwrap_or(i64::MAX);
        let granted = self
            .client
            .clone()
            .lease_grant(seconds, None)
            .await
            .map_err(|err| convert(err).context("etcd: granting a lease"))?;
        Ok(EtcdLease {
            client: self.client.clone(),
            id: granted.id(),
            stream: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether any holder or waiter is queued under `key`.
    async fn is_taken(&self, key: &str) -> Result<bool> {
        let options = GetOptions::new().with_prefix().with_count_only();
        let response = self
            .client
            .clone()
            .get(format!("{key}/"), Some(options))
            .await
            .map_err(|err| convert(err).context("etcd: reading a lock"))?;
        Ok(response.count() > 0)
    }
}

impl fmt::Debug for EtcdCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Runs `operation` (a lock or campaign call that waits in etcd) while
/// keeping `lease` alive, for at most `wait` (`None`: forever). On failure
/// or timeout the lease is revoked, which withdraws the queued key; on
/// success returns the operation's output and when the lease was last
/// confirmed alive.
async fn while_kept_alive<T>(
    lease: &EtcdLease,
    ttl: Duration,
    granted_at: Instant,
    wait: Option<Duration>,
    operation: impl Future<Output = Result<T>>,
) -> Result<(T, Instant)> {
    let mut valid_from = granted_at;
    let deadline = wait.and_then(|wait| Instant::now().checked_add(wait));
    let mut operation = std::pin::pin!(operation);
    let outcome = loop {
        let renew_at = Instant::now() + ttl / 3;
        let wake = deadline.map_or(renew_at, |deadline| deadline.min(renew_at));
        tokio::select! {
            outcome = &mut operation => break outcome,
            () = tokio::time::sleep_until(wake) => {}
        }
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            break Err(Error::timeout("etcd: not acquired within the wait"));
        }
        let sent = Instant::now();
        if let Ok(Renewal::Held) = lease.renew().await {
            valid_from = sent;
        }
    };
    match outcome {
        Ok(value) => Ok((value, valid_from)),
        Err(err) => {
            if let Err(revoke) = lease.release().await {
                tracing::warn!(%revoke, "etcd: revoking the lease of an abandoned wait failed; it expires with its TTL");
            }
            Err(err)
        }
    }
}

#[async_trait]
impl Lock for EtcdCoordinator {
    fn scheme(&self) -> &'static str {
        "etcd"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard> {
        validate_lock(name, options)?;
        let key = self.lock_key(name);
        // etcd's Lock call queues until granted, so "do not wait" is a check
        // first, then a short window in case someone else got in between.
        if options.wait.is_none() && self.is_taken(&key).await? {
            return Err(Error::timeout(format!("lock {name} is held")));
        }
        let wait = options.wait.unwrap_or_else(|| self.config.try_window());
        let granted_at = Instant::now();
        let lease = self.grant(options.ttl).await?;
        let mut client = self.client.clone();
        let lock_options = etcd_client::LockOptions::new().with_lease(lease.id);
        let locking = async {
            client
                .lock(key.clone(), Some(lock_options))
                .await
                .map_err(|err| convert(err).context("etcd: locking"))
        };
        let (response, valid_from) =
            while_kept_alive(&lease, options.ttl, granted_at, Some(wait), locking)
                .await
                .map_err(|err| err.context(format!("lock {name}")))?;
        let token = response
            .header()
            .map(|header| header.revision())
            .and_then(|revision| u64::try_from(revision).ok())
            .ok_or_else(|| Error::internal("etcd: a lock response without a revision"))?;
        let hold = Hold::start(Arc::new(lease), options.ttl, token, valid_from);
        Ok(LockGuard::new(name, hold))
    }
}

#[async_trait]
impl Election for EtcdCoordinator {
    // One coordinator serves both traits: its scheme and capabilities are
    // the lock side's, stated once there.
    fn scheme(&self) -> &'static str {
        Lock::scheme(self)
    }

    fn capabilities(&self) -> Capabilities {
        Lock::capabilities(self)
    }

    async fn campaign(
        &self,
        role: &str,
        candidate: &str,
        options: &CampaignOptions,
    ) -> Result<Leadership> {
        validate_campaign(role, candidate, options)?;
        let granted_at = Instant::now();
        let lease = self.grant(options.ttl).await?;
        let mut client = self.client.clone();
        let key = self.role_key(role);
        let campaigning = async {
            client
                .campaign(key, candidate, lease.id)
                .await
                .map_err(|err| convert(err).context("etcd: campaigning"))
        };
        let (mut response, valid_from) =
            while_kept_alive(&lease, options.ttl, granted_at, options.wait, campaigning)
                .await
                .map_err(|err| err.context(format!("role {role}")))?;
        let term = response
            .take_leader()
            .and_then(|leader| u64::try_from(leader.rev()).ok())
            .ok_or_else(|| Error::internal("etcd: a campaign response without a leader key"))?;
        let hold = Hold::start(Arc::new(lease), options.ttl, term, valid_from);
        Ok(Leadership::new(Leader::new(role, candidate, term), hold))
    }

    async fn leader(&self, role: &str) -> Result<Option<Leader>> {
        crate::validate_name("role", role)?;
        // The leader is the oldest candidate key; reading it directly avoids
        // etcd's Leader call, which reports "no leader" as an untyped error.
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let response = self
            .client
            .clone()
            .get(format!("{}/", self.role_key(role)), Some(options))
            .await
            .map_err(|err| convert(err).context("etcd: reading the leader"))?;
        response
            .kvs()
            .first()
            .map(|kv| to_leader(role, kv))
            .transpose()
    }

    async fn observe(&self, role: &str) -> Result<LeaderStream> {
        crate::validate_name("role", role)?;
        // etcd answers an Observe call only once the role has a leader, so
        // the call is made when the stream is first polled, not here.
        let mut client = self.client.clone();
        let key = self.role_key(role);
        let observing = futures::stream::once(async move { client.observe(key).await });
        let role = role.to_owned();
        let leaders = observing
            .map(move |stream| {
                let role = role.clone();
                match stream {
                    Ok(stream) => stream
                        .filter_map(move |response| {
                            let leader = match response {
                                Ok(response) => response.kv().map(|kv| to_leader(&role, kv)),
                                Err(err) => Some(Err(convert(err).context("etcd: observing"))),
                            };
                            futures::future::ready(leader)
                        })
                        .left_stream(),
                    Err(err) => {
                        futures::stream::iter([Err(convert(err).context("etcd: observing"))])
                            .right_stream()
                    }
                }
            })
            .flatten();
        Ok(crate::new_terms_only(leaders).boxed())
    }
}

fn to_leader(role: &str, kv: &etcd_client::KeyValue) -> Result<Leader> {
    let candidate = kv.value_str().map_err(|err| {
        Error::internal("etcd: a candidate name that is not UTF-8").with_source(err)
    })?;
    let term = u64::try_from(kv.create_revision())
        .map_err(|err| Error::internal("etcd: a negative revision").with_source(err))?;
    Ok(Leader::new(role, candidate, term))
}

/// One etcd lease, renewed over a keep-alive stream opened on first use.
struct EtcdLease {
    client: Client,
    id: i64,
    stream: tokio::sync::Mutex<Option<(LeaseKeeper, LeaseKeepAliveStream)>>,
}

impl fmt::Debug for EtcdLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdLease").field("id", &self.id).finish()
    }
}

#[async_trait]
impl Lease for EtcdLease {
    async fn renew(&self) -> Result<Renewal> {
        let mut stream = self.stream.lock().await;
        if stream.is_none() {
            let opened = self
                .client
                .clone()
                .lease_keep_alive(self.id)
                .await
                .map_err(|err| convert(err).context("etcd: opening keep-alive"))?;
            *stream = Some(opened);
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            return Err(Error::internal("etcd: keep-alive stream missing"));
        };
        let answer = match keeper.keep_alive().await {
            Ok(()) => responses.message().await,
            Err(err) => Err(err),
        };
        match answer {
            // etcd answers a keep-alive for an expired or revoked lease with TTL 0.
            Ok(Some(response)) if response.ttl() > 0 => Ok(Renewal::Held),
            Ok(Some(_)) => Ok(Renewal::Gone),
            Ok(None) => {
                *stream = None;
                Err(Error::unavailable("etcd: keep-alive stream closed"))
            }
            Err(err) => {
                *stream = None;
                Err(convert(err).context("etcd: keep-alive"))
            }
        }
    }

    async fn release(&self) -> Result<()> {
        match self.client.clone().lease_revoke(self.id).await {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = convert(err);
                // Revoking a lease that already expired: the key is gone, as wanted.
                if err.kind() == ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err.context("etcd: revoking a lease"))
                }
            }
        }
    }
}

/// etcd-client's errors as micro's, by gRPC code where there is one.
fn convert(err: etcd_client::Error) -> Error {
    let kind = match &err {
        _ if micro_core::is_connection_failure(&err) => ErrorKind::Unavailable,
        etcd_client::Error::GRpcStatus(status) => {
            match ErrorKind::from_grpc_code(i32::from(status.code())) {
                // micro never cancels a request it still waits for: a
                // Cancelled answer means the server or the connection went.
                ErrorKind::Cancelled => ErrorKind::Unavailable,
                kind => kind,
            }
        }
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            ErrorKind::InvalidArgument
        }
        _ => ErrorKind::Unavailable,
    };
    Error::new(kind, "etcd request failed").with_source(err)
}
