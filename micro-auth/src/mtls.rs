//! Mutual TLS identities: the subject of the certificate a client presented
//! (and the transport verified against its client CA) as the account.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::{Account, Auth, Error, Result};

/// An [`Auth`] backend of client certificates: each known subject
/// (`CN=billing,O=acme`, as the certificate names it) is an account, and
/// optionally any other verified subject is an account with default scopes.
/// Bearer tokens are not certificates: [`Auth::inspect`] refuses them all, so
/// no header can claim a certificate's identity.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// # block_on(async {
/// use micro_auth::{Account, Auth, mtls::CertificateSubjects};
///
/// let auth = CertificateSubjects::new()
///     .subject("CN=billing", Account::new("billing", "mtls").with_scopes(["orders:read"]));
/// let billing = auth.inspect_peer("CN=billing").await.unwrap().unwrap();
/// assert_eq!(billing.id, "billing");
/// assert!(auth.inspect_peer("CN=stranger").await.unwrap().is_none());
/// assert!(auth.inspect("CN=billing").await.is_err());
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct CertificateSubjects {
    known: HashMap<String, Account>,
    anyone: Option<Vec<String>>,
}

impl CertificateSubjects {
    /// No subjects known: every certificate is anonymous.
    pub fn new() -> CertificateSubjects {
        CertificateSubjects::default()
    }

    /// Makes the certificate subject `subject` the account `account`.
    pub fn subject(mut self, subject: impl Into<String>, account: Account) -> CertificateSubjects {
        self.known.insert(subject.into(), account);
        self
    }

    /// Makes every other verified subject an account of its own (its id is
    /// the subject) holding `scopes`.
    pub fn any_subject<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> CertificateSubjects {
        self.anyone = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
}

#[async_trait]
impl Auth for CertificateSubjects {
    async fn inspect(&self, _credential: &str) -> Result<Account> {
        Err(Error::unauthenticated("the token is not valid"))
    }

    async fn inspect_peer(&self, subject: &str) -> Result<Option<Account>> {
        if let Some(account) = self.known.get(subject) {
            return Ok(Some(account.clone()));
        }
        Ok(self
            .anyone
            .as_ref()
            .map(|scopes| Account::new(subject, "mtls").with_scopes(scopes.iter().cloned())))
    }
}
