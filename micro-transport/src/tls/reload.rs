//! A server certificate that follows its files: re-read when they change, so
//! a rotated certificate is served without a restart.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime},
};

use rustls::{
    crypto::CryptoProvider,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::pem;
use crate::{Error, Result};

/// How often, at most, handshakes look at the files for a change: a stat of
/// two files once a second costs nothing, and a rotation shows within it.
const RECHECK: Duration = Duration::from_secs(1);

/// What identifies one version of the files: their modification times and sizes.
type Stamp = [(Option<SystemTime>, u64); 2];

/// The certificate served, re-read from its files when they change.
pub(super) struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
    checked_at: Mutex<Instant>,
}

impl ReloadingCert {
    /// Loads the certificate and key now; failing here fails the server's start.
    pub(super) fn load(
        cert_file: &Path,
        key_file: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ReloadingCert> {
        let stamp = stamp(cert_file, key_file);
        let key = certified_key(cert_file, key_file, &provider)?;
        Ok(ReloadingCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider,
            current: RwLock::new((Arc::new(key), stamp)),
            checked_at: Mutex::new(Instant::now()),
        })
    }

    /// Re-reads the files if they changed since the last look. A version that
    /// does not load (a half-written file, a key that does not match) is
    /// logged and skipped; the last good certificate stays in service.
    fn refresh(&self) {
        {
            let mut checked_at = self
                .checked_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if checked_at.elapsed() < RECHECK {
                return;
            }
            *checked_at = Instant::now();
        }
        let stamp = stamp(&self.cert_file, &self.key_file);
        if self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            == stamp
        {
            return;
        }
        match certified_key(&self.cert_file, &self.key_file, &self.provider) {
            Ok(key) => {
                tracing::info!(cert = %self.cert_file.display(), "serving a new TLS certificate");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    (Arc::new(key), stamp);
            }
            Err(err) => {
                tracing::warn!(error = %err, "a changed TLS certificate did not load; still serving the previous one");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

fn stamp(cert_file: &Path, key_file: &Path) -> Stamp {
    [cert_file, key_file].map(|path| match std::fs::metadata(path) {
        Ok(metadata) => (metadata.modified().ok(), metadata.len()),
        Err(_) => (None, 0),
    })
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = pem::certificates(cert_file)?;
    let key = pem::private_key(key_file)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| {
        Error::invalid_argument(format!(
            "{} and {}: not a matching certificate and key: {err}",
            cert_file.display(),
            key_file.display()
        ))
    })
}
