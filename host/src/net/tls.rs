//! TLS for outbound connections: one crypto provider, the system's trust store, private
//! certificate authorities and an optional client certificate.
//!
//! The provider is aws-lc-rs, chosen explicitly: it is the one the AWS SDK's HTTPS client
//! is built on, so the binary carries exactly one (ring is not compiled in), and rustls'
//! process-wide default is installed at start ([`install_crypto_provider`]) so that no
//! library can hit "could not determine the process-level CryptoProvider".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What `--ca-file`, `--client-cert` and `--client-key` say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM files of certificate authorities trusted besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// A client certificate chain (PEM) and its private key (PEM), for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

/// A file the TLS settings name could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or parsing a PEM file failed.
    #[error("--{flag} {}: {reason}", path.display())]
    File {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("the TLS configuration is not usable: {0}")]
    Config(#[from] rustls::Error),
}

/// The one crypto provider of this binary.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Makes aws-lc-rs rustls' process-wide default. Call once, first thing in `main`;
/// later calls do nothing.
pub fn install_crypto_provider() {
    // An error only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The client configuration: the system's roots plus `--ca-file`s, HTTP/1.1 by ALPN, and
/// the client certificate if one is set.
///
/// The system's trust store is read once per process; pipelines with the same settings share
/// one configuration (its root store alone is a few hundred kilobytes), as long as the files
/// it was read from are unchanged (a reload after a CA file changed reads it again).
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    type Shared = Vec<((TlsSettings, Vec<Option<SystemTime>>), Arc<ClientConfig>)>;
    static SHARED: Mutex<Shared> = Mutex::new(Vec::new());
    let key = (settings.clone(), settings.file_times());
    if let Ok(shared) = SHARED.lock()
        && let Some((_, config)) = shared.iter().find(|(k, _)| *k == key)
    {
        return Ok(Arc::clone(config));
    }
    let config = build_client_config(settings)?;
    if let Ok(mut shared) = SHARED.lock() {
        shared.push((key, Arc::clone(&config)));
    }
    Ok(config)
}

impl TlsSettings {
    /// When each file was last modified (none: unreadable), in a fixed order.
    fn file_times(&self) -> Vec<Option<SystemTime>> {
        let identity = self.client_identity.iter().flat_map(|(c, k)| [c, k]);
        self.ca_files
            .iter()
            .chain(identity)
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }
}

/// The system's certificate authorities, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "a certificate of the system's trust store could not be read");
        }
        native.certs
    })
}

fn build_client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let (system, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    for path in &settings.ca_files {
        for certificate in read_certificates("ca-file", path)? {
            roots.add(certificate).map_err(|error| TlsError::File {
                flag: "ca-file",
                path: path.clone(),
                reason: error.to_string(),
            })?;
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "no trusted certificate authority found (install the system's CA certificates or \
             give --ca-file): https endpoints will fail"
        );
    }
    tracing::debug!(
        system_roots = system,
        ca_files = settings.ca_files.len(),
        "TLS trust store"
    );
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match &settings.client_identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates("client-cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::File {
                flag: "client-key",
                path: key.clone(),
                reason: format!("no usable PEM private key: {error}"),
            })?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem = |reason: String| TlsError::File {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| problem(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(problem("holds no PEM certificate".to_string()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_trust_store_alone_makes_a_config() {
        install_crypto_provider();
        let config = client_config(&TlsSettings::default()).expect("a client config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let settings = TlsSettings {
            ca_files: vec![path.clone()],
            client_identity: None,
        };
        let error = client_config(&settings).expect_err("refused");
        let text = error.to_string();
        assert!(text.starts_with("--ca-file "), "{text}");
        assert!(text.contains("holds no PEM certificate"), "{text}");
    }

    #[test]
    fn a_missing_ca_file_is_refused() {
        let settings = TlsSettings {
            ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
            client_identity: None,
        };
        assert!(matches!(
            client_config(&settings),
            Err(TlsError::File {
                flag: "ca-file",
                ..
            })
        ));
    }

    #[test]
    fn only_aws_lc_rs_is_the_process_default() {
        install_crypto_provider();
        let installed = CryptoProvider::get_default().expect("a default provider");
        let ours = crypto_provider();
        let names = |p: &CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(installed), names(&ours));
    }
}
