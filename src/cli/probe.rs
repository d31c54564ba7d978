//! `probe`: where to bootstrap, how to authenticate, and what each broker should advertise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

use crate::inject::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeOutput {
    /// One line per broker, then its faults.
    Text,
    /// One JSON object: healthy, and the brokers with addresses and faults.
    Json,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// host:port of a broker's advertised listener (e.g. kafka-0.kafka.example.com:9094); a
    /// comma-separated list is tried in order, as bootstrap.servers.
    #[arg(long, env = "KLI_BOOTSTRAP")]
    pub bootstrap: String,
    /// Time each step (resolve, connect, one request) gets.
    #[arg(long, env = "KLI_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Check that each broker advertises what this listeners template renders for it (broker N
    /// is pod <statefulset>-<N minus --node-id-offset>).
    #[arg(long, env = "KLI_EXPECT_TEMPLATE")]
    pub expect_template: Option<String>,
    /// The listener of the template the probe connects through.
    #[arg(long, env = "KLI_LISTENER", default_value = "EXTERNAL")]
    pub listener: String,
    /// With --expect-template: the StatefulSet, its namespace and headless Service.
    #[arg(long, env = "KLI_STATEFULSET", default_value = "kafka")]
    pub statefulset: String,
    #[arg(short = 'n', long, env = "KLI_NAMESPACE", default_value = "default")]
    pub namespace: String,
    #[arg(long, env = "KLI_SERVICE", default_value = "kafka-headless")]
    pub service: String,
    #[arg(long, env = "KLI_DOMAIN")]
    pub domain: Option<String>,
    #[arg(
        long,
        env = "KLI_NODE_ID_OFFSET",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub node_id_offset: i64,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = ProbeOutput::Text)]
    pub output: ProbeOutput,
    /// Keep one connection per broker idle this long, then use it again (load balancer idle
    /// timeouts).
    #[arg(long, env = "KLI_IDLE_CHECK", value_parser = humantime::parse_duration)]
    pub idle_check: Option<Duration>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

impl ProbeArgs {
    pub fn config(&self) -> anyhow::Result<crate::probe::Config> {
        if self.timeout.is_zero() {
            bail!("--timeout must be positive");
        }
        let expect = match &self.expect_template {
            None => None,
            Some(source) => Some(crate::probe::Expectation {
                listeners: Template::parse(source)
                    .map_err(|error| anyhow::anyhow!("--expect-template: {error}"))?,
                listener: self.listener.clone(),
                statefulset: self.statefulset.clone(),
                namespace: self.namespace.clone(),
                service: self.service.clone(),
                domain: self.domain.clone(),
                node_id_offset: self.node_id_offset,
            }),
        };
        Ok(crate::probe::Config {
            bootstrap: self.bootstrap.clone(),
            timeout: self.timeout,
            expect,
            security: self.security.security()?,
            idle_check: self.idle_check,
            json: self.output == ProbeOutput::Json,
        })
    }
}

/// How to reach the brokers: TLS and SASL, shared by `probe` and `roll`.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Speak TLS to the brokers, checking their certificates against --ca-file (e.g. the system
    /// bundle /etc/ssl/certs/ca-certificates.crt for public CAs) and each advertised host name.
    #[arg(long, env = "KLI_TLS")]
    pub tls: bool,
    /// PEM CA certificates the brokers' certificates must chain to.
    #[arg(long, env = "KLI_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require one.
    #[arg(long, env = "KLI_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    #[arg(long, env = "KLI_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KLI_SASL_MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, env = "KLI_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (else the environment variable KLI_SASL_PASSWORD). It is
    /// never printed.
    #[arg(long, env = "KLI_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,
    /// Send a PLAIN password without --tls. The probe connects to every address a broker name
    /// resolves to, including the wrong ones it exists to find: without TLS each of them reads
    /// the password.
    #[arg(long, env = "KLI_ALLOW_PLAINTEXT_PASSWORD")]
    pub allow_plaintext_password: bool,
}

impl SecurityArgs {
    pub(super) fn security(&self) -> anyhow::Result<crate::probe::Security> {
        use crate::probe::{Mechanism, Sasl};
        let tls = if self.tls {
            let ca_file = self
                .ca_file
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--tls needs --ca-file"))?;
            let pem = std::fs::read(ca_file)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
            }
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let config = match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| anyhow::anyhow!("--cert-file {}: {e}", cert.display()))?;
                    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", key.display()))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| anyhow::anyhow!("--cert-file/--key-file: {e}"))?
                }
                _ => builder.with_no_client_auth(),
            };
            Some(std::sync::Arc::new(config))
        } else {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                bail!("--ca-file and --cert-file need --tls");
            }
            None
        };
        let sasl = match (&self.sasl_mechanism, &self.sasl_username) {
            (Some(mechanism), Some(username)) => {
                let mechanism = match mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "SCRAM-SHA-256" => Mechanism::ScramSha256,
                    "SCRAM-SHA-512" => Mechanism::ScramSha512,
                    other => {
                        bail!("--sasl-mechanism {other}: not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                    }
                };
                if mechanism == Mechanism::Plain && tls.is_none() && !self.allow_plaintext_password
                {
                    bail!(
                        "--sasl-mechanism PLAIN without --tls would send the password in clear \
                         text to every address the probe tries, the wrong ones included; add \
                         --tls, use SCRAM, or pass --allow-plaintext-password on a network you trust"
                    );
                }
                let password = match &self.sasl_password_file {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| {
                            anyhow::anyhow!("--sasl-password-file {}: {e}", path.display())
                        })?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                    None => std::env::var("KLI_SASL_PASSWORD").map_err(|_| {
                        anyhow::anyhow!(
                            "--sasl-mechanism needs --sasl-password-file or KLI_SASL_PASSWORD"
                        )
                    })?,
                };
                Some(Sasl {
                    mechanism,
                    username: username.clone(),
                    password,
                })
            }
            (None, None) => None,
            _ => bail!("--sasl-username needs --sasl-mechanism"),
        };
        Ok(crate::probe::Security { tls, sasl })
    }
}
