use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::stream::BoxStream;
#[cfg(any(feature = "memory", feature = "nats"))]
use tokio::time::Instant;

use crate::{Capabilities, Error, Hold, Result};

/// How to campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CampaignOptions {
    /// How long leadership outlives the leader's last renewal (see
    /// [`LockOptions::ttl`](crate::LockOptions::ttl)). Default: 15 s.
    pub ttl: Duration,
    /// How long to wait to be elected: `None` waits as long as it takes,
    /// `Some(d)` gives up after `d` with `ErrorKind::Timeout` and leaves no
    /// candidacy behind. Default: `None`.
    pub wait: Option<Duration>,
}

impl CampaignOptions {
    /// The default TTL.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

    /// Options with this TTL, waiting as long as it takes.
    pub fn ttl(ttl: Duration) -> CampaignOptions {
        CampaignOptions { ttl, wait: None }
    }

    /// Gives up after `wait`.
    pub fn with_wait(mut self, wait: Duration) -> CampaignOptions {
        self.wait = Some(wait);
        self
    }

    /// When the polling backends (memory, NATS) stop campaigning: `None`
    /// wait means never. One definition so both backends read `wait` alike.
    #[cfg(any(feature = "memory", feature = "nats"))]
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.wait.and_then(crate::deadline_after)
    }
}

impl Default for CampaignOptions {
    fn default() -> CampaignOptions {
        CampaignOptions::ttl(CampaignOptions::DEFAULT_TTL)
    }
}

/// Who leads a role, and since which term.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Leader {
    /// The role.
    pub role: String,
    /// What the leader called itself when it campaigned.
    pub candidate: String,
    /// Grows with every new leadership of the role: a fencing token.
    pub term: u64,
}

impl Leader {
    /// A leader of `role`.
    pub fn new(role: impl Into<String>, candidate: impl Into<String>, term: u64) -> Leader {
        Leader {
            role: role.into(),
            candidate: candidate.into(),
            term,
        }
    }
}

/// Leaders as they take office: the leader of the moment the stream is first
/// polled (if there is one), then each new one. Vacancies are not reported.
/// Dropping it stops the observation.
pub type LeaderStream = BoxStream<'static, Result<Leader>>;

/// Being the leader of a role. Dropping it resigns in the background; call
/// [`resign`](Leadership::resign) to resign and see the result.
///
/// Leadership is renewed every third of its TTL. Once renewals stop
/// succeeding another candidate may take over: [`lost`](Leadership::lost)
/// resolves then, and the leader should stop acting as one.
#[derive(Debug)]
pub struct Leadership {
    leader: Leader,
    hold: Hold,
}

impl Leadership {
    /// Leadership of `leader.role` over a backend's hold.
    pub fn new(leader: Leader, hold: Hold) -> Leadership {
        Leadership { leader, hold }
    }

    /// The role, candidate and term.
    pub fn leader(&self) -> &Leader {
        &self.leader
    }

    /// The term (fencing token) of this leadership.
    pub fn term(&self) -> u64 {
        self.leader.term
    }

    crate::hold::hold_state_methods! {
        is_lost: "Whether leadership has been lost.",
        lost: "Resolves once leadership is lost (see [`Hold::lost`]); never while held.",
        stop_refreshing: "Stops renewing without resigning (see [`Hold::stop_refreshing`]).",
    }

    /// Resigns, letting the next candidate take over, and waits for the
    /// backend to confirm. Leadership already lost is not an error.
    pub async fn resign(self) -> Result<()> {
        self.hold.release().await
    }
}

/// Leader election: among the candidates for a role, one leads at a time.
///
/// Role names follow the lock name rules (see [`Lock`](crate::Lock)); candidate
/// names are any non-empty string up to 1024 bytes.
///
/// `Arc<T>` and `Box<T>` forward the trait, so [`DynElection`] is one too.
#[async_trait]
pub trait Election: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this backend in configuration.
    fn scheme(&self) -> &'static str;

    /// What this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Campaigns for `role` as `candidate`; returns once elected.
    async fn campaign(
        &self,
        role: &str,
        candidate: &str,
        options: &CampaignOptions,
    ) -> Result<Leadership>;

    /// The current leader of `role`, if any.
    async fn leader(&self, role: &str) -> Result<Option<Leader>>;

    /// Follows `role`'s leaders from now on.
    async fn observe(&self, role: &str) -> Result<LeaderStream>;
}

/// A shared, type-erased election backend.
pub type DynElection = Arc<dyn Election>;

macro_rules! forward_election {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Election + ?Sized> Election for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn campaign(
                &self,
                role: &str,
                candidate: &str,
                options: &CampaignOptions,
            ) -> Result<Leadership> {
                (**self).campaign(role, candidate, options).await
            }
            async fn leader(&self, role: &str) -> Result<Option<Leader>> {
                (**self).leader(role).await
            }
            async fn observe(&self, role: &str) -> Result<LeaderStream> {
                (**self).observe(role).await
            }
        }
    };
}

forward_election!(Arc);
forward_election!(Box);

/// Checks what every backend accepts, before it reaches one.
pub(crate) fn validate_campaign(
    role: &str,
    candidate: &str,
    options: &CampaignOptions,
) -> Result<()> {
    crate::validate_name("role", role)?;
    if candidate.is_empty() || candidate.len() > 1024 {
        return Err(Error::invalid_argument(
            "a candidate name must be 1 to 1024 bytes",
        ));
    }
    crate::validate_ttl(options.ttl)
}
