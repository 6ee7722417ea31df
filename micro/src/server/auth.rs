//! Who may call: the server's [`Auth`] backend and [`Rules`], applied to
//! every call before its route is looked up or its body decoded.

use std::sync::{PoisonError, RwLock};

use micro_auth::{Account, Auth, DynAuth, Rules, authenticate};

use crate::{Metadata, Result};

/// The metadata key (and HTTP header) carrying a caller's credential.
pub(crate) const AUTHORIZATION: &str = "authorization";

/// A server's authentication backend and access rules.
#[derive(Debug, Default)]
pub(crate) struct Authorizer {
    auth: RwLock<Option<DynAuth>>,
    rules: RwLock<Rules>,
}

impl Authorizer {
    pub(crate) fn set_auth(&self, auth: impl Auth) {
        *self.auth.write().unwrap_or_else(PoisonError::into_inner) =
            Some(std::sync::Arc::new(auth));
    }

    pub(crate) fn update_rules(&self, change: impl FnOnce(Rules) -> Rules) {
        let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
        *rules = change(std::mem::take(&mut *rules));
    }

    /// The caller's account (none without a credential), if the rules let
    /// it call `endpoint` of `service`. A credential that is present but not
    /// valid is refused even where no account is needed: a caller who sent
    /// one meant to be someone.
    pub(crate) async fn authorize(
        &self,
        service: &str,
        endpoint: &str,
        metadata: &Metadata,
    ) -> Result<Option<Account>> {
        let auth = self
            .auth
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let account = match (metadata.get(AUTHORIZATION), auth) {
            (Some(value), Some(auth)) => authenticate(&*auth, Some(value)).await?,
            // No token: a client certificate verified under mutual TLS may
            // still say who the caller is.
            (None, Some(auth)) => match metadata.get(micro_transport::PEER_SUBJECT) {
                Some(subject) => auth.inspect_peer(subject).await?,
                None => None,
            },
            _ => None,
        };
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verify(account.as_ref(), service, endpoint)?;
        Ok(account)
    }
}

/// Replaces a running server's rules (see [`Server::rules_handle`](super::Server::rules_handle)).
#[derive(Debug, Clone)]
pub struct RulesHandle(pub(super) std::sync::Arc<Authorizer>);

impl RulesHandle {
    /// Replaces every rule with `rules`; calls from now on are decided by them.
    pub fn replace(&self, rules: Rules) {
        self.0.update_rules(|_| rules);
    }

    /// Keeps the rules equal to the list at `path` in `config` (a list of
    /// rules as [`Rules`] reads them), now and whenever it changes, until the
    /// returned future is dropped: spawn it beside the service. A value that
    /// does not read as rules is logged and the last good rules stay.
    pub async fn follow(self, config: crate::config::Config, path: String) {
        use futures::StreamExt;
        match config.get::<Rules>(&path) {
            Ok(rules) => self.replace(rules),
            Err(err) => {
                tracing::warn!(%path, error = %err, "auth rules not read; keeping the current ones")
            }
        }
        let mut changes = config.watch::<Rules>(&path);
        while let Some(change) = changes.next().await {
            match change {
                Ok(rules) => self.replace(rules),
                Err(err) => {
                    tracing::warn!(%path, error = %err, "auth rules not read; keeping the current ones")
                }
            }
        }
    }
}
