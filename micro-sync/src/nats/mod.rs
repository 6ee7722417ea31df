//! The NATS backend: locks and roles are keys of a JetStream key/value bucket.
//!
//! - Taking a key is a compare-and-set: a write that expects the key's last
//!   revision to be "none" (or the delete marker a release left), carrying a
//!   per-key TTL (`Nats-TTL`, nats-server ≥ 2.11; the bucket is created with
//!   TTLs and expiry markers enabled).
//! - The holder renews by writing again, expecting its own last revision; a
//!   write that finds another revision means the hold is gone.
//! - Releasing deletes the key, again only at the holder's revision, so a
//!   holder that lost the key can never delete its successor's.
//! - Waiters watch the key and retry when it is deleted or expires, with a
//!   slow poll as a backstop.
//!
//! Keys are `lock.<name>` and `election.<role>` (a `/` in a name becomes `.`
//! in NATS, which is why names may not contain `..`). Values are JSON:
//! `{"holder": "<candidate>", "term": <revision it was taken at>}`.
//! Fencing tokens and terms are the bucket revision at which the key was
//! taken. TTLs are whole seconds on the wire (rounded up).

mod config;

use std::{fmt, sync::Arc, time::Duration};

use async_nats::{
    HeaderMap, HeaderValue,
    header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_TTL},
    jetstream::{
        self,
        context::PublishErrorKind,
        kv::{self, Operation},
    },
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::{sync::Mutex, time::Instant};

pub use self::config::NatsConfig;
use crate::{
    CampaignOptions, Capabilities, Election, Error, Hold, Leader, LeaderStream, Leadership, Lease,
    Lock, LockGuard, LockOptions, Renewal, Result, election::validate_campaign,
    lock::validate_lock,
};

/// The NATS key/value [`Lock`] and [`Election`] backend. Cloning shares the connection.
///
/// ```no_run
/// use micro_sync::{CampaignOptions, Election, nats::NatsCoordinator};
///
/// # async fn example() -> micro_sync::Result<()> {
/// let nats = NatsCoordinator::builder()
///     .servers(["nats://127.0.0.1:4222"])
///     .build()
///     .await?;
/// let leadership = nats.campaign("scheduler", "node-1", &CampaignOptions::default()).await?;
/// let lost = leadership.lost();
/// // ... lead until `lost` resolves or we are done ...
/// # drop(lost);
/// leadership.resign().await
/// # }
/// ```
#[derive(Clone)]
pub struct NatsCoordinator {
    jetstream: jetstream::Context,
    kv: kv::Store,
    config: Arc<NatsConfig>,
}

/// Builds a [`NatsCoordinator`].
#[derive(Debug, Clone, Default)]
pub struct NatsCoordinatorBuilder {
    config: NatsConfig,
}

impl NatsCoordinatorBuilder {
    /// The servers to connect to.
    pub fn servers<I, S>(mut self, servers: I) -> NatsCoordinatorBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.connection.servers = servers.into_iter().map(Into::into).collect();
        self
    }

    /// Where to connect and how to authenticate: the settings every NATS
    /// backend shares.
    pub fn connection(
        mut self,
        connection: micro_connect::nats::NatsConfig,
    ) -> NatsCoordinatorBuilder {
        self.config.connection = connection;
        self
    }

    /// The key/value bucket (see [`NatsConfig::bucket`]).
    pub fn bucket(mut self, bucket: impl Into<String>) -> NatsCoordinatorBuilder {
        self.config.bucket = bucket.into();
        self
    }

    /// Keeps the bucket in memory (see [`NatsConfig::memory_storage`]).
    pub fn memory_storage(mut self, memory: bool) -> NatsCoordinatorBuilder {
        self.config.memory_storage = memory;
        self
    }

    /// Connects and opens (or creates) the bucket.
    pub async fn build(self) -> Result<NatsCoordinator> {
        NatsCoordinator::connect(self.config).await
    }
}

/// What a key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Holding {
    holder: String,
    /// Absent in the write that takes the key (its revision is not known
    /// before the write); renewals carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
}

impl NatsCoordinator {
    /// A builder, starting from the defaults of [`NatsConfig`].
    pub fn builder() -> NatsCoordinatorBuilder {
        NatsCoordinatorBuilder::default()
    }

    /// Connects with settings from the environment (see [`NatsConfig::from_env`]).
    pub async fn from_env() -> Result<NatsCoordinator> {
        NatsCoordinator::connect(NatsConfig::from_env()?).await
    }

    /// Connects with these settings and opens (or creates) the bucket.
    pub async fn connect(config: NatsConfig) -> Result<NatsCoordinator> {
        config.validate()?;
        let client = config.connection.connect().await?;
        NatsCoordinator::with_client(client, config).await
    }

    /// Uses a client already connected (shared with other NATS backends of
    /// the process); `config.connection` is then not used.
    pub async fn with_client(
        client: async_nats::Client,
        config: NatsConfig,
    ) -> Result<NatsCoordinator> {
        config.validate()?;
        let jetstream = jetstream::new(client);
        let kv = open_bucket(&jetstream, &config).await?;
        Ok(NatsCoordinator {
            jetstream,
            kv,
            config: Arc::new(config),
        })
    }

    fn subject(&self, key: &str) -> String {
        let prefix = self.kv.put_prefix.as_deref().unwrap_or(&self.kv.prefix);
        format!("{prefix}{key}")
    }

    /// Writes `holding` to `key` if its last revision is `expected` (0: none).
    /// `Ok(None)` when the revision was another.
    async fn write_if(
        &self,
        key: &str,
        expected: u64,
        holding: &Holding,
        ttl: Duration,
    ) -> Result<Option<u64>> {
        let payload = serde_json::to_vec(holding)
            .map_err(|err| Error::internal("nats: encoding a holding").with_source(err))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            HeaderValue::from(expected),
        );
        headers.insert(NATS_MESSAGE_TTL, HeaderValue::from(whole_seconds(ttl)));
        self.publish_if(key, headers, Bytes::from(payload)).await
    }

    async fn publish_if(
        &self,
        key: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Option<u64>> {
        let ack = match self
            .jetstream
            .publish_with_headers(self.subject(key), headers, payload)
            .await
        {
            Ok(ack) => ack.await,
            Err(err) => Err(err),
        };
        match ack {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(err) if err.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(err) => Err(unavailable("writing a key", err)),
        }
    }

    /// Takes `key` if nobody holds it: its revision, or `None` when held.
    async fn try_take(&self, key: &str, candidate: &str, ttl: Duration) -> Result<Option<u64>> {
        let holding = Holding {
            holder: candidate.to_owned(),
            term: None,
        };
        // A release's delete marker can expire between the read and the
        // write; read again then rather than report a free key as held.
        for _ in 0..3 {
            let expected = match self.kv.entry(key).await {
                Ok(None) => 0,
                Ok(Some(entry)) if entry.operation == Operation::Put => return Ok(None),
                Ok(Some(marker)) => marker.revision,
                Err(err) => return Err(unavailable("reading a key", err)),
            };
            if let Some(revision) = self.write_if(key, expected, &holding, ttl).await? {
                return Ok(Some(revision));
            }
        }
        Ok(None)
    }

    /// Takes `key` for `candidate`, waiting until `deadline` (`None`: forever).
    async fn take(
        &self,
        key: String,
        candidate: &str,
        ttl: Duration,
        deadline: Option<Instant>,
    ) -> Result<Hold> {
        let mut watch = None;
        loop {
            let sent = Instant::now();
            if let Some(revision) = self.try_take(&key, candidate, ttl).await? {
                let lease = NatsLease {
                    coordinator: self.clone(),
                    key,
                    holding: Holding {
                        holder: candidate.to_owned(),
                        term: Some(revision),
                    },
                    ttl,
                    revision: Mutex::new(revision),
                };
                return Ok(Hold::start(Arc::new(lease), ttl, revision, sent));
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| deadline <= now) {
                return Err(Error::timeout(format!("{key} is held by someone else")));
            }
            let Some(changes) = watch.as_mut() else {
                // Watch first, then look again: a release between the first
                // look and the watch is not missed.
                watch = self.kv.watch(&key).await.ok();
                continue;
            };
            let poll = now + self.config.poll_interval();
            let wake = deadline.map_or(poll, |deadline| deadline.min(poll));
            tokio::select! {
                change = changes.next() => if !matches!(change, Some(Ok(_))) {
                    watch = None;
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

impl fmt::Debug for NatsCoordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsCoordinator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

async fn open_bucket(jetstream: &jetstream::Context, config: &NatsConfig) -> Result<kv::Store> {
    let storage = if config.memory_storage {
        jetstream::stream::StorageType::Memory
    } else {
        jetstream::stream::StorageType::File
    };
    let wanted = kv::Config {
        bucket: config.bucket.clone(),
        description: "micro-sync locks and elections".to_owned(),
        history: 1,
        storage,
        // Per-key TTLs, and markers when a key expires so watchers hear of it.
        limit_markers: Some(Duration::from_secs(1)),
        ..kv::Config::default()
    };
    match jetstream.create_key_value(wanted).await {
        Ok(store) => Ok(store),
        // Someone created it with other settings: use it as it is; a bucket
        // without per-key TTLs fails loudly on the first hold.
        Err(create_err) => jetstream
            .get_key_value(&config.bucket)
            .await
            .map_err(|err| {
                unavailable("opening the bucket", err)
                    .context(format!("creating it failed too: {create_err}"))
            }),
    }
}

fn whole_seconds(ttl: Duration) -> u64 {
    (ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)).max(1)
}

fn unavailable(what: &str, err: impl Into<crate::BoxError>) -> Error {
    Error::unavailable(format!("nats: {what}")).with_source(err)
}

/// NATS key for a lock or role: `/` separates tokens in names, `.` in NATS.
fn key(kind: &str, name: &str) -> String {
    format!("{kind}.{}", name.replace('/', "."))
}

fn to_leader(role: &str, entry: &kv::Entry) -> Option<Leader> {
    if entry.operation != Operation::Put {
        return None;
    }
    let holding: Holding = serde_json::from_slice(&entry.value).ok()?;
    let term = holding.term.unwrap_or(entry.revision);
    Some(Leader::new(role, holding.holder, term))
}

#[async_trait]
impl Lock for NatsCoordinator {
    fn scheme(&self) -> &'static str {
        "nats"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn acquire(&self, name: &str, options: &LockOptions) -> Result<LockGuard> {
        validate_lock(name, options)?;
        let hold = self
            .take(key("lock", name), "", options.ttl, options.deadline())
            .await?;
        Ok(LockGuard::new(name, hold))
    }
}

#[async_trait]
impl Election for NatsCoordinator {
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
        let hold = self
            .take(
                key("election", role),
                candidate,
                options.ttl,
                options.deadline(),
            )
            .await?;
        let leader = Leader::new(role, candidate, hold.token());
        Ok(Leadership::new(leader, hold))
    }

    async fn leader(&self, role: &str) -> Result<Option<Leader>> {
        crate::validate_name("role", role)?;
        let entry = self
            .kv
            .entry(key("election", role))
            .await
            .map_err(|err| unavailable("reading the leader", err))?;
        Ok(entry.and_then(|entry| to_leader(role, &entry)))
    }

    async fn observe(&self, role: &str) -> Result<LeaderStream> {
        crate::validate_name("role", role)?;
        let entries = self
            .kv
            .watch_with_history(key("election", role))
            .await
            .map_err(|err| unavailable("observing", err))?;
        let role = role.to_owned();
        let leaders = entries.filter_map(move |entry| {
            let leader = match entry {
                Ok(entry) => to_leader(&role, &entry).map(Ok),
                Err(err) => Some(Err(unavailable("observing", err))),
            };
            futures::future::ready(leader)
        });
        Ok(crate::new_terms_only(leaders).boxed())
    }
}

/// One held key and the revision of our last write to it.
struct NatsLease {
    coordinator: NatsCoordinator,
    key: String,
    holding: Holding,
    ttl: Duration,
    revision: Mutex<u64>,
}

impl fmt::Debug for NatsLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsLease")
            .field("key", &self.key)
            .field("term", &self.holding.term)
            .finish()
    }
}

#[async_trait]
impl Lease for NatsLease {
    async fn renew(&self) -> Result<Renewal> {
        let mut revision = self.revision.lock().await;
        let written = self
            .coordinator
            .write_if(&self.key, *revision, &self.holding, self.ttl)
            .await?;
        Ok(match written {
            Some(new_revision) => {
                *revision = new_revision;
                Renewal::Held
            }
            None => Renewal::Gone,
        })
    }

    async fn release(&self) -> Result<()> {
        let revision = self.revision.lock().await;
        let mut headers = HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            HeaderValue::from(*revision),
        );
        // The marker need not outlive the waiters who react to it.
        headers.insert(NATS_MESSAGE_TTL, HeaderValue::from(60u64));
        // A different revision means the key is no longer ours: leave it.
        self.coordinator
            .publish_if(&self.key, headers, Bytes::new())
            .await
            .map(drop)
    }
}
