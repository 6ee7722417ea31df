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

/// A certificate authority made for one test: it signs server and client
/// certificates (valid, expired, for any names), so a test can build trust,
/// mutual TLS and every way of getting them wrong.
#[derive(Debug)]
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: std::path::PathBuf,
    /// The CA certificate's PEM file: what clients and servers trust.
    pub cert: String,
}

impl TestCa {
    /// A new CA whose certificate is written to `dir` as `<name>.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap_or_else(|err| panic!("CA parameters: {err}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap_or_else(|err| panic!("CA key: {err}"));
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key)
            .unwrap_or_else(|err| panic!("self-signing the CA: {err}"));
        let cert = dir.join(format!("{name}.pem"));
        std::fs::write(&cert, issuer.pem())
            .unwrap_or_else(|err| panic!("writing {}: {err}", cert.display()));
        TestCa {
            issuer,
            dir: dir.to_owned(),
            cert: cert.display().to_string(),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses), usable by a
    /// server and by a client, with `name` as its common name, written as
    /// `<name>.pem` and `<name>-key.pem`.
    pub fn issue(&self, name: &str, names: &[&str]) -> PemFiles {
        self.issue_valid(name, names, true)
    }

    /// Like [`issue`](TestCa::issue), but a certificate that expired in 2021.
    pub fn issue_expired(&self, name: &str, names: &[&str]) -> PemFiles {
        self.issue_valid(name, names, false)
    }

    fn issue_valid(&self, name: &str, names: &[&str], current: bool) -> PemFiles {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names)
            .unwrap_or_else(|err| panic!("certificate parameters: {err}"));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if !current {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap_or_else(|err| panic!("key: {err}"));
        let cert = params
            .signed_by(&key, &self.issuer)
            .unwrap_or_else(|err| panic!("signing {name}: {err}"));
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem())
            .unwrap_or_else(|err| panic!("writing {}: {err}", cert_path.display()));
        std::fs::write(&key_path, key.serialize_pem())
            .unwrap_or_else(|err| panic!("writing {}: {err}", key_path.display()));
        PemFiles {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        }
    }
}
