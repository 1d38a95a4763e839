//! The admin API's connections: hyper's HTTP/1 server on our own accept loop, so that every
//! connection is bounded.
//!
//! - A request head must arrive within [`HEADER_READ_TIMEOUT`], or the connection is
//!   closed: a half-sent request holds nothing for long.
//! - At most [`MAX_CONNECTIONS`] connections are open at once; past that, a new connection
//!   is closed at once rather than left waiting in the kernel's queue. The cap has headroom
//!   far above what operators, probes and scrapers open, so that `/health` still answers
//!   while slow clients run into their timeout.
//! - With `tls_cert`/`tls_key`, connections are TLS (rustls, with the binary's one crypto
//!   provider), and the handshake has the same time limit as a request head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::AdminTls;

/// How long a client may take to send a request head (and a TLS handshake).
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once.
pub(super) const MAX_CONNECTIONS: usize = 1024;

/// Largest request head (the request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the API's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AdminTlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("admin TLS: {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refuses the certificate and key.
    #[error("admin TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The TLS acceptor of `tls`' certificate chain and key.
pub(super) fn acceptor(tls: &AdminTls) -> Result<TlsAcceptor, AdminTlsError> {
    let problem = |path: &Path, reason: String| AdminTlsError::File {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|error| problem(&tls.cert, error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(&tls.cert, error.to_string()))?;
    if chain.is_empty() {
        return Err(problem(&tls.cert, "holds no PEM certificate".to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|error| problem(&tls.key, format!("no usable PEM private key: {error}")))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(crate::net::tls::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `stop`.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    // Said once each time the cap is reached, not once a refused connection.
    let mut full = false;
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "admin API: cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if !full {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "admin API: too many connections; new ones are closed until some end"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        full = false;
        let (http, app, tls, stop) = (http.clone(), app.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(&http, TokioIo::new(stream), app, stop).await,
                Some(tls) => {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            connection(&http, TokioIo::new(stream), app, stop).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "admin API: TLS handshake failed");
                        }
                        Err(_) => tracing::debug!("admin API: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// One connection, until the client or the server is done.
async fn connection<I>(
    http: &hyper::server::conn::http1::Builder,
    io: TokioIo<I>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            outcome = connection.as_mut() => break outcome,
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                // Answers what is in flight, then closes.
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(error) = outcome {
        // Timeouts and clients that go away are routine.
        tracing::debug!(%error, "admin API connection ended");
    }
}
