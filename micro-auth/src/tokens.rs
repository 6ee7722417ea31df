//! Static tokens: a fixed table of secrets, each standing for an account
//! (per-route tokens, service keys).

use std::collections::HashMap;

use async_trait::async_trait;

use crate::{Account, Auth, Error, Result};

/// An [`Auth`] backend over a fixed table of tokens.
///
/// ```
/// # tokio_test_block(async {
/// use micro_auth::{Account, Auth, tokens::StaticTokens};
///
/// let auth = StaticTokens::new().token("s3cret", Account::new("billing", "static").with_scopes(["orders:read"]));
/// let account = auth.inspect("s3cret").await.unwrap();
/// assert_eq!(account.id, "billing");
/// assert!(auth.inspect("guess").await.is_err());
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    accounts: HashMap<String, Account>,
}

impl StaticTokens {
    /// An empty table: every token is refused.
    pub fn new() -> StaticTokens {
        StaticTokens::default()
    }

    /// Lets `token` stand for `account`.
    pub fn token(mut self, token: impl Into<String>, account: Account) -> StaticTokens {
        self.accounts.insert(token.into(), account);
        self
    }
}

#[async_trait]
impl Auth for StaticTokens {
    async fn inspect(&self, credential: &str) -> Result<Account> {
        self.accounts
            .get(credential)
            .cloned()
            .ok_or_else(|| Error::unauthenticated("the token is not valid"))
    }
}

impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("StaticTokens")
            .field("tokens", &self.accounts.len())
            .finish()
    }
}
