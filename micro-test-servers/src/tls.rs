//! Certificates for TLS tests, made on the spot with rcgen.

use std::path::Path;

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct PemFiles {
    /// The certificate's path.
    pub cert: String,
    /// The private key's path.
    pub key: String,
}

/// Writes a self-signed certificate for `127.0.0.1` and `localhost`, and its
/// key, to `dir` as `<name>.pem` and `<name>-key.pem`. Trusting the
/// certificate itself (as a CA file) is how a test makes it trusted.
pub fn self_signed(dir: &Path, name: &str) -> PemFiles {
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap_or_else(|err| panic!("generating a certificate: {err}"));
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, generated.cert.pem())
        .unwrap_or_else(|err| panic!("writing {}: {err}", cert.display()));
    std::fs::write(&key, generated.signing_key.serialize_pem())
        .unwrap_or_else(|err| panic!("writing {}: {err}", key.display()));
    PemFiles {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    }
}
