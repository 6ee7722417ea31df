use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who a credential belongs to, as an [`Auth`](crate::Auth) backend found it:
/// handlers see it in their context, rules decide on its scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Account {
    /// The account's identity: a JWT's `sub`, a static token's name.
    pub id: String,
    /// Who vouched for it: a JWT's `iss`, or the backend's name.
    pub issuer: String,
    /// What it may do, matched against the scopes rules require.
    pub scopes: Vec<String>,
    /// Anything else the credential said (a JWT's other string claims).
    pub metadata: BTreeMap<String, String>,
}

impl Account {
    /// An account `id` vouched for by `issuer`, with no scopes.
    pub fn new(id: impl Into<String>, issuer: impl Into<String>) -> Account {
        Account {
            id: id.into(),
            issuer: issuer.into(),
            ..Account::default()
        }
    }

    /// Adds `scopes`.
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Account {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Whether the account holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| held == scope)
    }
}
