//! JSON Web Tokens (feature `jwt`): signatures checked against configured
//! keys (PEM files, an HMAC secret, or a JWKS file), and the issuer, audience,
//! expiry and not-before claims checked with a small leeway.
//!
//! Each key allows only the algorithms of its own family, so a token cannot
//! choose how it is checked: `alg: none` is refused, and so is a token
//! signed with HS256 using an RSA public key as the secret (algorithm
//! confusion). A token's `sub` becomes the account's id, `iss` its issuer,
//! `scope` (space-separated) or `scopes`/`scp` (an array) its scopes, and its
//! other string claims its metadata.

use std::{path::Path, time::Duration};

use async_trait::async_trait;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, JwkSet},
};
use serde_json::{Map, Value};

use crate::{Account, Auth, Error, Result};

/// Claims that describe the token rather than the account.
const REGISTERED: [&str; 10] = [
    "sub", "iss", "aud", "exp", "nbf", "iat", "jti", "scope", "scopes", "scp",
];

/// The JWT [`Auth`] backend; build it with [`JwtAuth::builder`].
#[derive(Clone)]
pub struct JwtAuth {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

/// One verification key and the algorithms it may check.
#[derive(Clone)]
struct Key {
    id: Option<String>,
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl JwtAuth {
    /// A builder with no keys, no issuer or audience required, and a leeway
    /// of 30 s on expiry and not-before.
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder {
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
        }
    }

    fn validation(&self, algorithms: &[Algorithm]) -> Validation {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms.to_vec();
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn verify(
        &self,
        token: &str,
    ) -> std::result::Result<Map<String, Value>, jsonwebtoken::errors::Error> {
        let header = jsonwebtoken::decode_header(token)?;
        let candidates = self.keys.iter().filter(|key| match (&header.kid, &key.id) {
            (Some(wanted), Some(id)) => wanted == id,
            _ => true,
        });
        let mut last = jsonwebtoken::errors::ErrorKind::InvalidSignature.into();
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(
                token,
                &key.key,
                &self.validation(&key.algorithms),
            ) {
                Ok(data) => return Ok(data.claims),
                Err(err) => last = err,
            }
        }
        Err(last)
    }
}

#[async_trait]
impl Auth for JwtAuth {
    async fn inspect(&self, credential: &str) -> Result<Account> {
        let claims = self.verify(credential).map_err(|err| {
            tracing::debug!(error = %err, "a JWT was refused");
            Error::unauthenticated("the token is not valid")
        })?;
        Ok(account(&claims))
    }
}

fn account(claims: &Map<String, Value>) -> Account {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut account = Account::new(text("sub"), text("iss"));
    if let Some(scope) = claims.get("scope").and_then(Value::as_str) {
        account
            .scopes
            .extend(scope.split_whitespace().map(str::to_owned));
    }
    for name in ["scopes", "scp"] {
        if let Some(Value::Array(scopes)) = claims.get(name) {
            account
                .scopes
                .extend(scopes.iter().filter_map(Value::as_str).map(str::to_owned));
        }
    }
    for (name, value) in claims {
        if let (false, Some(value)) = (REGISTERED.contains(&name.as_str()), value.as_str()) {
            account.metadata.insert(name.clone(), value.to_owned());
        }
    }
    account
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.keys.len())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Builds a [`JwtAuth`]: its keys, and the issuer and audience it requires.
#[derive(Debug)]
#[must_use]
pub struct JwtAuthBuilder {
    keys: Vec<Result<Key>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
const EC: [Algorithm; 2] = [Algorithm::ES256, Algorithm::ES384];
const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

impl JwtAuthBuilder {
    /// Requires `iss` to be `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> JwtAuthBuilder {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to name `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> JwtAuthBuilder {
        self.audience = Some(audience.into());
        self
    }

    /// How far past `exp` (or before `nbf`) a token is still taken, for
    /// clocks that disagree a little. Whole seconds.
    pub fn leeway(mut self, leeway: Duration) -> JwtAuthBuilder {
        self.leeway = leeway;
        self
    }

    /// Verifies RS256..RS512 and PS256..PS512 tokens with the RSA public key in `path` (PEM).
    pub fn rsa_pem_file(self, path: impl AsRef<Path>) -> JwtAuthBuilder {
        self.pem_key(path.as_ref(), DecodingKey::from_rsa_pem, &RSA)
    }

    /// Verifies ES256 and ES384 tokens with the EC public key in `path` (PEM).
    pub fn ec_pem_file(self, path: impl AsRef<Path>) -> JwtAuthBuilder {
        self.pem_key(path.as_ref(), DecodingKey::from_ec_pem, &EC)
    }

    /// Verifies EdDSA tokens with the Ed25519 public key in `path` (PEM).
    pub fn ed_pem_file(self, path: impl AsRef<Path>) -> JwtAuthBuilder {
        self.pem_key(path.as_ref(), DecodingKey::from_ed_pem, &[Algorithm::EdDSA])
    }

    /// Verifies HS256..HS512 tokens with the shared `secret`.
    pub fn hmac_secret(mut self, secret: &[u8]) -> JwtAuthBuilder {
        let key = DecodingKey::from_secret(secret).map_err(|err| {
            Error::invalid_argument(format!("the HMAC secret is not usable: {err}"))
        });
        self.keys.push(key.map(|key| Key {
            id: None,
            key,
            algorithms: HMAC.to_vec(),
        }));
        self
    }

    /// Verifies tokens with the keys of the JWKS (JSON Web Key Set) in
    /// `path`, chosen by the token's `kid`.
    pub fn jwks_file(mut self, path: impl AsRef<Path>) -> JwtAuthBuilder {
        let path = path.as_ref();
        let keys = read(path).and_then(|bytes| {
            let set: JwkSet = serde_json::from_slice(&bytes).map_err(|err| {
                Error::invalid_argument(format!("{}: not a JWKS: {err}", path.display()))
            })?;
            set.keys
                .iter()
                .map(|jwk| {
                    let algorithms = match &jwk.algorithm {
                        AlgorithmParameters::RSA(_) => RSA.to_vec(),
                        AlgorithmParameters::EllipticCurve(_) => EC.to_vec(),
                        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                        AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
                        // Key types this backend cannot check are skipped.
                        _ => Vec::new(),
                    };
                    let key = DecodingKey::from_jwk(jwk).map_err(|err| {
                        Error::invalid_argument(format!(
                            "{}: a key is not usable: {err}",
                            path.display()
                        ))
                    })?;
                    Ok(Key {
                        id: jwk.common.key_id.clone(),
                        key,
                        algorithms,
                    })
                })
                .collect::<Result<Vec<Key>>>()
        });
        match keys {
            Ok(keys) => self.keys.extend(
                keys.into_iter()
                    .filter(|key| !key.algorithms.is_empty())
                    .map(Ok),
            ),
            Err(err) => self.keys.push(Err(err)),
        }
        self
    }

    fn pem_key(
        mut self,
        path: &Path,
        parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
        algorithms: &[Algorithm],
    ) -> JwtAuthBuilder {
        let key = read(path).and_then(|pem| {
            parse(&pem).map_err(|err| {
                Error::invalid_argument(format!(
                    "{}: not a usable public key: {err}",
                    path.display()
                ))
            })
        });
        self.keys.push(key.map(|key| Key {
            id: None,
            key,
            algorithms: algorithms.to_vec(),
        }));
        self
    }

    /// Builds the backend. A key file that could not be read or parsed, or
    /// no key at all, is `InvalidArgument`.
    pub fn build(self) -> Result<JwtAuth> {
        let keys = self.keys.into_iter().collect::<Result<Vec<Key>>>()?;
        if keys.is_empty() {
            return Err(Error::invalid_argument(
                "a JWT backend needs at least one key",
            ));
        }
        Ok(JwtAuth {
            keys,
            issuer: self.issuer,
            audience: self.audience,
            leeway: self.leeway,
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| Error::invalid_argument(format!("{}: cannot read: {err}", path.display())))
}
