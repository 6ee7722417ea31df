//! The stand-in's state, shared by every route: the agent's services and
//! checks, one change index for blocking queries, and room for the KV store.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{sync::watch, time::Instant};

use super::kv::KvStore;

/// The name of the one node the stand-in's agent runs on.
pub(crate) const NODE_NAME: &str = "consul-stand-in";
/// The stand-in node's id.
pub(crate) const NODE_ID: &str = "00000000-0000-4000-8000-00000000c0de";
/// The datacenter it reports.
pub(crate) const DATACENTER: &str = "dc1";

/// Everything the routes share; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    /// The current index: every change raises it, and blocking queries wait on it.
    index: watch::Sender<u64>,
}

/// The data, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Registered services by service id.
    pub(crate) services: BTreeMap<String, ServiceEntry>,
    /// Checks by check id.
    pub(crate) checks: BTreeMap<String, CheckEntry>,
    /// The KV store's data (see `kv.rs`).
    #[allow(dead_code, reason = "the hook for the KV routes, which will read it")]
    pub(crate) kv: KvStore,
}

/// One service instance registered with the agent, as Consul reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServiceEntry {
    #[serde(rename = "ID")]
    pub(crate) id: String,
    pub(crate) service: String,
    pub(crate) tags: Vec<String>,
    pub(crate) address: String,
    pub(crate) port: u16,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

/// Health status of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Passing,
    Warning,
    Critical,
}

/// One TTL check (the only kind the stand-in runs).
#[derive(Debug, Clone)]
pub(crate) struct CheckEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) service_id: String,
    pub(crate) status: Status,
    pub(crate) output: String,
    pub(crate) ttl: Duration,
    /// When the TTL runs out unless the check is updated.
    pub(crate) expires_at: Instant,
    /// Remove the check's service after it has been critical this long.
    pub(crate) deregister_after: Option<Duration>,
    /// Since when it has been critical.
    pub(crate) critical_since: Option<Instant>,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        let (index, _) = watch::channel(1);
        Shared {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                index,
            }),
        }
    }

    /// The state, for reading or for a change (then call [`Shared::bump`]).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // No critical section can leave the state half-changed.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current index.
    pub(crate) fn index(&self) -> u64 {
        *self.inner.index.borrow()
    }

    /// Raises the index after a change and wakes blocking queries; returns the new index.
    pub(crate) fn bump(&self) -> u64 {
        let mut next = 0;
        self.inner.index.send_modify(|index| {
            *index += 1;
            next = *index;
        });
        next
    }

    /// Waits until the index is above `index` or `wait` has passed, as a
    /// blocking query does (Consul's `?index=N&wait=D`).
    pub(crate) async fn wait_past(&self, index: u64, wait: Duration) {
        let mut changes = self.inner.index.subscribe();
        let _ = tokio::time::timeout(wait, changes.wait_for(|current| *current > index)).await;
    }

    /// Applies TTL expiry and critical-service reaping as of `now`; returns
    /// whether anything changed (the index is then already raised).
    pub(crate) fn expire(&self, now: Instant) -> bool {
        let mut state = self.lock();
        let mut changed = false;
        let mut reap = Vec::new();
        for check in state.checks.values_mut() {
            if check.status != Status::Critical && now >= check.expires_at {
                check.status = Status::Critical;
                check.output = "TTL expired".to_owned();
                check.critical_since = Some(now);
                changed = true;
            }
            if let (Some(since), Some(after)) = (check.critical_since, check.deregister_after)
                && now >= since + after
            {
                reap.push(check.service_id.clone());
            }
        }
        for service_id in reap {
            state.remove_service(&service_id);
            changed = true;
        }
        if changed {
            let index = self.bump();
            for check in state.checks.values_mut() {
                if check.critical_since == Some(now) {
                    check.modify_index = index;
                }
            }
        }
        changed
    }
}

impl State {
    /// Removes a service and its checks.
    pub(crate) fn remove_service(&mut self, service_id: &str) -> bool {
        let removed = self.services.remove(service_id).is_some();
        self.checks
            .retain(|_, check| check.service_id != service_id);
        removed
    }

    /// Whether every check of the service passes (a service without checks does).
    pub(crate) fn passing(&self, service_id: &str) -> bool {
        self.checks
            .values()
            .filter(|check| check.service_id == service_id)
            .all(|check| check.status == Status::Passing)
    }
}
