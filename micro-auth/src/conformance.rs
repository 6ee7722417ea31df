//! The conformance suite every [`Auth`] backend passes: one `pub async fn`
//! per behaviour, and [`auth_conformance!`](crate::auth_conformance) to
//! expand them into tests for a backend.
//!
//! A backend's constructor returns it with one valid credential for an
//! account `ada` holding scope `orders:read`.

use crate::{Account, Auth, ErrorKind};

/// What a backend under test gives the suite.
#[derive(Debug)]
pub struct Fixture<A> {
    /// The backend.
    pub auth: A,
    /// A credential it accepts, for account `ada` with scope `orders:read`.
    pub valid: String,
}

fn assert_ada(account: &Account) {
    assert_eq!(account.id, "ada");
    assert!(account.has_scope("orders:read"), "{account:?}");
}

/// A valid credential yields its account, every time.
pub async fn a_valid_credential_is_its_account(fixture: &Fixture<impl Auth>) {
    assert_ada(&fixture.auth.inspect(&fixture.valid).await.unwrap());
    assert_ada(&fixture.auth.inspect(&fixture.valid).await.unwrap());
}

/// Unknown, empty and altered credentials are `Unauthenticated`.
pub async fn invalid_credentials_are_unauthenticated(fixture: &Fixture<impl Auth>) {
    let mut altered = fixture.valid.clone();
    let last = altered
        .pop()
        .map_or('x', |c| if c == 'A' { 'B' } else { 'A' });
    altered.push(last);
    for credential in ["", "not-a-credential", &altered, "Bearer x.y.z"] {
        let err = fixture.auth.inspect(credential).await.unwrap_err();
        assert_eq!(
            err.kind(),
            ErrorKind::Unauthenticated,
            "{credential:?}: {err}"
        );
    }
}

/// Backends behind `Arc<dyn Auth>` and `Box<dyn Auth>` answer the same.
pub async fn shared_and_boxed_backends_forward(fixture: Fixture<impl Auth>) {
    let valid = fixture.valid.clone();
    let shared: crate::DynAuth = std::sync::Arc::new(fixture.auth);
    assert_ada(&shared.inspect(&valid).await.unwrap());
    let boxed: Box<dyn Auth> = Box::new(shared);
    assert_ada(&boxed.inspect(&valid).await.unwrap());
}

/// Expands the suite into one `#[tokio::test]` per case for the backend
/// returned by `$fixture` (an expression giving a [`Fixture`]).
#[macro_export]
macro_rules! auth_conformance {
    ($fixture:expr) => {
        #[tokio::test]
        async fn a_valid_credential_is_its_account() {
            $crate::conformance::a_valid_credential_is_its_account(&$fixture).await;
        }
        #[tokio::test]
        async fn invalid_credentials_are_unauthenticated() {
            $crate::conformance::invalid_credentials_are_unauthenticated(&$fixture).await;
        }
        #[tokio::test]
        async fn shared_and_boxed_backends_forward() {
            $crate::conformance::shared_and_boxed_backends_forward($fixture).await;
        }
    };
}

#[cfg(test)]
mod static_tokens {
    use crate::{Account, tokens::StaticTokens};

    fn fixture() -> super::Fixture<StaticTokens> {
        super::Fixture {
            auth: StaticTokens::new().token(
                "t-0123456789",
                Account::new("ada", "static").with_scopes(["orders:read"]),
            ),
            valid: "t-0123456789".to_owned(),
        }
    }

    crate::auth_conformance!(fixture());
}
