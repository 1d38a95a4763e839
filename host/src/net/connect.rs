//! Opening a connection: name lookup, TCP, an optional proxy tunnel, TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::failure::{Failure, FailureClass};
use super::policy::Origin;
use super::proxy::Proxy;

/// A byte stream to the target: plain TCP, or TLS over TCP or over a proxy tunnel.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// The largest proxy answer to `CONNECT` we read before giving up on it.
const MAX_PROXY_HEAD: usize = 16 * 1024;

/// Connects to `target`, through `proxy` if given, within `timeout` for everything up to
/// and including the TLS handshake.
pub async fn open(
    target: &Origin,
    proxy: Option<&Proxy>,
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Box<dyn Io>, Failure> {
    let dial = async {
        let tcp = match proxy {
            None => tcp(target.bare_host(), target.port(), &target.address()).await?,
            Some(proxy) => {
                if proxy.scheme != "http" {
                    return Err(Failure::new(
                        FailureClass::Proxy,
                        format!(
                            "the proxy {} uses {}: only http:// proxies are supported",
                            proxy.address(),
                            proxy.scheme
                        ),
                    ));
                }
                let mut stream = tcp(&proxy.host, proxy.port, &proxy.address())
                    .await
                    .map_err(|failure| in_proxy(proxy, failure))?;
                if target.is_https() {
                    tunnel(&mut stream, target, proxy).await?;
                }
                stream
            }
        };
        if !target.is_https() {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        }
        let name = ServerName::try_from(target.bare_host().to_string()).map_err(|_| {
            Failure::new(
                FailureClass::Tls,
                format!("`{}` is not a valid TLS server name", target.host()),
            )
        })?;
        let stream = TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|error| Failure::tls(&target.address(), target.bare_host(), &error))?;
        Ok(Box::new(stream) as Box<dyn Io>)
    };
    let via = proxy.map_or_else(String::new, |p| {
        format!(" through the proxy {}", p.address())
    });
    tokio::time::timeout(timeout, dial)
        .await
        .map_err(|_| Failure::timeout(&target.address(), &format!("connecting{via} to"), timeout))?
}

/// Resolves `host` and connects to the first address that answers.
async fn tcp(host: &str, port: u16, address: &str) -> Result<TcpStream, Failure> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|error| Failure::dns(host, &error))?
        .collect();
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for socket_address in addresses {
        match TcpStream::connect(socket_address).await {
            Ok(stream) => {
                // SSE events are small and latency matters more than segment count.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last_error = error,
        }
    }
    Err(Failure::connect(address, &last_error))
}

/// Says that a failure happened on the way to the proxy.
fn in_proxy(proxy: &Proxy, failure: Failure) -> Failure {
    let class = match failure.class {
        FailureClass::Dns | FailureClass::Timeout => failure.class,
        _ => FailureClass::Proxy,
    };
    Failure::new(
        class,
        format!("the proxy {}: {}", proxy.address(), failure.sentence),
    )
}

/// Asks the proxy for a tunnel to `target` (RFC 9110 §9.3.6) and checks its answer.
async fn tunnel(stream: &mut TcpStream, target: &Origin, proxy: &Proxy) -> Result<(), Failure> {
    let authority = target.address();
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(authorization) = &proxy.authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(authorization.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let broken = |error: io::Error| {
        Failure::new(
            FailureClass::Proxy,
            format!(
                "the proxy {} broke the tunnel to {authority}: {error}",
                proxy.address()
            ),
        )
    };
    stream.write_all(head.as_bytes()).await.map_err(broken)?;
    // Read the answer's head byte by byte: whatever follows it belongs to the TLS handshake.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_PROXY_HEAD {
            return Err(Failure::new(
                FailureClass::Proxy,
                format!(
                    "the proxy {} answered CONNECT with a head over {MAX_PROXY_HEAD} bytes",
                    proxy.address()
                ),
            ));
        }
        let byte = stream.read_u8().await.map_err(broken)?;
        answer.push(byte);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default().trim();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status.len() == 3 && status.starts_with('2') {
        return Ok(());
    }
    Err(Failure::new(
        FailureClass::Proxy,
        format!(
            "the proxy {} refused the tunnel to {authority}: it answered `{status_line}`",
            proxy.address()
        ),
    ))
}
