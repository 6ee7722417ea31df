//! Reading certificates and keys from PEM files, with errors that name the file.

use std::path::Path;

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::{Error, Result};

fn unreadable(path: &Path, what: &str, err: impl std::fmt::Display) -> Error {
    Error::invalid_argument(format!("{}: cannot read {what}: {err}", path.display()))
}

/// Every certificate in `path`; none is an error.
pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|err| unreadable(path, "certificates", err))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| unreadable(path, "certificates", err))?;
    if certificates.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{}: holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

/// The first private key in `path`.
pub(super) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| unreadable(path, "a private key", err))
}

/// A root store of every certificate in `path`.
pub(super) fn roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|err| {
            Error::invalid_argument(format!(
                "{}: not a usable CA certificate: {err}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}
