//! micro's Auth building block: who is calling, and may they.
//!
//! An [`Auth`] backend inspects a credential (a bearer token) into an
//! [`Account`]; [`Rules`] decide from the account's scopes which endpoints it
//! may call. micro's server applies both to every call before the handler
//! runs and before the body is decoded, and hands the account to the handler
//! in its context.
//!
//! ```
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! # block_on(async {
//! use micro_auth::{Account, Auth, ErrorKind, Rule, Rules, tokens::StaticTokens};
//!
//! let auth = StaticTokens::new()
//!     .token("t-reader", Account::new("ada", "static").with_scopes(["orders:read"]));
//! let rules = Rules::new()
//!     .public("Health.*")
//!     .rule(Rule::grant("orders", "Orders.Get", "orders:read"));
//!
//! let ada = auth.inspect("t-reader").await.unwrap();
//! assert!(rules.verify(Some(&ada), "orders", "Orders.Get").is_ok());
//! let denied = rules.verify(Some(&ada), "orders", "Orders.Delete").unwrap_err();
//! assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
//! assert!(rules.verify(None, "orders", "Health.Check").is_ok());
//! # });
//! ```
//!
//! | backend | what it accepts | feature |
//! |---|---|---|
//! | [`tokens::StaticTokens`] | a fixed table of tokens, each an account | always |
//! | `jwt::JwtAuth` | JSON Web Tokens signed by a configured key or JWKS | `jwt` |
//! | [`mtls::CertificateSubjects`] | the subject of a client certificate verified under mutual TLS | always |

mod account;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod mtls;
mod rules;
pub mod tokens;

use std::sync::Arc;

use async_trait::async_trait;

pub use account::Account;
pub use micro_core::{Error, ErrorKind, Result};
pub use rules::{Access, Rule, Rules};

/// Turns a credential into the [`Account`] it stands for.
///
/// A credential that is not valid (unknown, malformed, expired, badly
/// signed) is `Unauthenticated`, with a message that helps no attacker.
#[async_trait]
pub trait Auth: std::fmt::Debug + Send + Sync + 'static {
    /// The account `credential` (a bearer token, without `Bearer `) stands for.
    async fn inspect(&self, credential: &str) -> Result<Account>;

    /// The account of a caller that presented, under mutual TLS, a verified
    /// client certificate whose subject is `subject` (`CN=billing,O=acme`);
    /// `None` when this backend does not know it (the default: backends
    /// of bearer tokens know no certificates).
    async fn inspect_peer(&self, subject: &str) -> Result<Option<Account>> {
        let _ = subject;
        Ok(None)
    }
}

/// A shared, type-erased [`Auth`] backend.
pub type DynAuth = Arc<dyn Auth>;

macro_rules! forward_auth {
    ($($wrapper:ty),*) => {$(
        #[async_trait]
        impl<T: Auth + ?Sized> Auth for $wrapper {
            async fn inspect(&self, credential: &str) -> Result<Account> {
                (**self).inspect(credential).await
            }

            async fn inspect_peer(&self, subject: &str) -> Result<Option<Account>> {
                (**self).inspect_peer(subject).await
            }
        }
    )*};
}

forward_auth!(Arc<T>, Box<T>);

/// The account behind an `authorization` value (`Bearer <token>`) as `auth`
/// finds it, or `None` when there is no value. A value that is not a bearer
/// token, or a token `auth` refuses, is `Unauthenticated`: a caller who sent
/// a credential meant to be someone.
pub async fn authenticate(auth: &dyn Auth, authorization: Option<&str>) -> Result<Option<Account>> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    let token =
        bearer_token(value).ok_or_else(|| Error::unauthenticated("the token is not valid"))?;
    auth.inspect(token).await.map(Some)
}

/// The credential in an `authorization` value: the token after `Bearer `
/// (any case), or `None` when there is none.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
