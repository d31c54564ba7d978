//! The serving certificate: loaded and verified at start-up, re-read when its files change (a
//! Secret volume swaps a `..data` symlink), and handed to each new TLS handshake. A broken new pair
//! is logged and counted while the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::telemetry::Metrics;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{flag} {path}: {error}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{flag} {path}: {what}")]
    Invalid {
        flag: &'static str,
        path: PathBuf,
        what: String,
    },
    #[error("--tls-cert {cert} and --tls-key {key} do not match: {error}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificate and key files.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A verified pair, ready for handshakes, and its leaf's validity window (Unix seconds).
struct Loaded {
    key: Arc<CertifiedKey>,
    not_before: i64,
    not_after: i64,
}

impl Loaded {
    fn valid_at(&self, now: i64) -> bool {
        (self.not_before..=self.not_after).contains(&now)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Hands the current certificate to every handshake; swapped atomically on reload.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl CertResolver {
    fn swap(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_owned(),
        error,
    })
}

/// Parses and verifies a PEM pair: a chain, a private key, and that they belong together.
fn load_pair(paths: &CertPaths, cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let invalid = |flag, path: &Path, what: String| TlsError::Invalid {
        flag,
        path: path.to_owned(),
        what,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(
                "--tls-cert",
                &paths.cert,
                format!("not PEM certificates: {e}"),
            )
        })?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("--tls-cert", &paths.cert, "holds no certificate".into()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| {
        invalid(
            "--tls-cert",
            &paths.cert,
            format!("not an X.509 certificate: {e}"),
        )
    })?;
    let not_before = parsed.validity().not_before.timestamp();
    let not_after = parsed.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| invalid("--tls-key", &paths.key, format!("no PEM private key: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(|error| TlsError::Mismatch {
            cert: paths.cert.clone(),
            key: paths.key.clone(),
            error,
        })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_before,
        not_after,
    })
}

/// Says in the log when a certificate just loaded is expired or close to it; the expiry gauge is
/// what alerts should use, this is for the operator reading the log.
fn warn_if_expiring(not_after: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let days_left = (not_after - now) / 86_400;
    if not_after <= now {
        error!(
            not_after,
            "the serving certificate has expired: the API server will refuse it"
        );
    } else if days_left < 14 {
        warn!(not_after, days_left, "the serving certificate expires soon");
    }
}

/// The live certificate of a server: the resolver handshakes use, and the file contents last seen
/// (a change is noticed by comparing them, which also catches a swap that keeps timestamps).
pub struct Certificates {
    paths: CertPaths,
    resolver: Arc<CertResolver>,
    last_seen: (Vec<u8>, Vec<u8>),
    /// A pair that did not load, seen once: reported only if the next check reads it again. A
    /// Secret volume swaps its `..data` symlink at once, but the two files are read one after
    /// the other, so a check during the swap can read the old certificate with the new key.
    unconfirmed: Option<(Vec<u8>, Vec<u8>)>,
    /// The validity window of the certificate being served.
    serving: (i64, i64),
}

impl Certificates {
    /// Loads the pair at start-up; any fault is fatal and names the flag.
    pub fn load(paths: CertPaths, metrics: &Metrics) -> Result<Self, TlsError> {
        let cert_pem = read("--tls-cert", &paths.cert)?;
        let key_pem = read("--tls-key", &paths.key)?;
        let loaded = load_pair(&paths, &cert_pem, &key_pem)?;
        metrics.certificate_loaded(loaded.not_after);
        warn_if_expiring(loaded.not_after);
        Ok(Self {
            paths,
            resolver: Arc::new(CertResolver {
                current: RwLock::new(loaded.key),
            }),
            last_seen: (cert_pem, key_pem),
            unconfirmed: None,
            serving: (loaded.not_before, loaded.not_after),
        })
    }

    /// The rustls server configuration: TLS 1.2+, ALPN h2 and http/1.1, optional client auth.
    pub fn server_config(&self, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let pem = read("--client-ca", path)?;
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| TlsError::Invalid {
                        flag: "--client-ca",
                        path: path.to_owned(),
                        what: format!("not PEM certificates: {e}"),
                    })?;
                    roots.add(cert).map_err(|e| TlsError::Invalid {
                        flag: "--client-ca",
                        path: path.to_owned(),
                        what: e.to_string(),
                    })?;
                }
                if roots.is_empty() {
                    return Err(TlsError::Invalid {
                        flag: "--client-ca",
                        path: path.to_owned(),
                        what: "holds no certificate".into(),
                    });
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Invalid {
                            flag: "--client-ca",
                            path: path.to_owned(),
                            what: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Re-reads the files; swaps in a changed, valid pair. A broken pair is reported once per
    /// distinct content, when two checks in a row read it, and the old certificate keeps serving.
    pub fn reload_if_changed(&mut self, metrics: &Metrics) {
        let (cert_pem, key_pem) = match (
            read("--tls-cert", &self.paths.cert),
            read("--tls-key", &self.paths.key),
        ) {
            (Ok(cert), Ok(key)) => (cert, key),
            (Err(error), _) | (_, Err(error)) => {
                // Mid-swap a file can be briefly absent; the next check sees the new one.
                warn!(%error, "certificate files unreadable; keeping the current certificate");
                return;
            }
        };
        if (&cert_pem, &key_pem) == (&self.last_seen.0, &self.last_seen.1) {
            // Back to what was seen before: a broken pair that comes again is new again.
            self.unconfirmed = None;
            return;
        }
        let now = unix_now();
        let serving_valid = (self.serving.0..=self.serving.1).contains(&now);
        match load_pair(&self.paths, &cert_pem, &key_pem) {
            // Never trade a certificate clients accept for one they refuse: an expired or
            // not-yet-valid pair waits (a later check of the same files does not retry it).
            Ok(loaded) if serving_valid && !loaded.valid_at(now) => {
                metrics.count_reload("rejected");
                error!(
                    not_before = loaded.not_before,
                    not_after = loaded.not_after,
                    now,
                    "new certificate is expired or not yet valid; keeping the current one"
                );
            }
            Ok(loaded) => {
                self.serving = (loaded.not_before, loaded.not_after);
                self.resolver.swap(loaded.key);
                metrics.certificate_loaded(loaded.not_after);
                metrics.count_reload("success");
                info!(
                    not_after = loaded.not_after,
                    "reloaded the serving certificate"
                );
            }
            Err(error) => {
                let pair = (cert_pem, key_pem);
                if self.unconfirmed.as_ref() != Some(&pair) {
                    debug!(%error, "new certificate files do not load; checking them again");
                    self.unconfirmed = Some(pair);
                    return;
                }
                metrics.count_reload("failure");
                error!(%error, "new certificate rejected; keeping the current one");
                self.unconfirmed = None;
                self.last_seen = pair;
                return;
            }
        }
        self.unconfirmed = None;
        self.last_seen = (cert_pem, key_pem);
    }

    /// Checks the files every `interval` until `stop`.
    pub async fn watch(
        mut self,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.reload_if_changed(&metrics),
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn reloads(metrics: &Metrics, result: &str) -> usize {
        let line =
            format!("kafka_listener_injector_certificate_reloads_total{{result=\"{result}\"}} ");
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&line)?.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn a_pair_read_across_a_swap_is_checked_again_and_a_broken_one_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CertPaths {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let write = |(cert, key): (&str, &str)| {
            std::fs::write(&paths.cert, cert).unwrap();
            std::fs::write(&paths.key, key).unwrap();
        };
        let (old, new) = (pair(), pair());
        let metrics = Metrics::new();
        write((&old.0, &old.1));
        let mut certificates = Certificates::load(paths.clone(), &metrics).unwrap();

        // Mid-swap: the old certificate with the new key. Not a failure yet, and the next
        // check reads the whole new pair.
        write((&old.0, &new.1));
        certificates.reload_if_changed(&metrics);
        assert_eq!(reloads(&metrics, "failure"), 0);
        write((&new.0, &new.1));
        certificates.reload_if_changed(&metrics);
        assert_eq!(
            (reloads(&metrics, "success"), reloads(&metrics, "failure")),
            (1, 0)
        );

        // A pair that stays broken: reported on the second check that reads it, then no more.
        write((&old.0, &new.1));
        for _ in 0..4 {
            certificates.reload_if_changed(&metrics);
        }
        assert_eq!(
            (reloads(&metrics, "success"), reloads(&metrics, "failure")),
            (1, 1)
        );
    }
}
