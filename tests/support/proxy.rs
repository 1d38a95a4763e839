//! An HTTP proxy on 127.0.0.1 that records what it is asked: `CONNECT` tunnels for https
//! targets, absolute-form requests for http ones. It forwards only to 127.0.0.1.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy saw of one request: its request line and `Proxy-Authorization`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub request_line: String,
    pub authorization: Option<String>,
}

/// A running proxy; stops when dropped.
pub struct TestProxy {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<ProxiedRequest>>>,
}

impl TestProxy {
    /// A proxy that forwards every request (to 127.0.0.1 only).
    pub fn forwarding() -> Self {
        Self::start(None)
    }

    /// A proxy that answers every request with this status line, e.g. `403 Forbidden`.
    pub fn refusing(status: &'static str) -> Self {
        Self::start(Some(status))
    }

    fn start(refusal: Option<&'static str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        {
            let stopping = Arc::clone(&stopping);
            let seen = Arc::clone(&seen);
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let seen = Arc::clone(&seen);
                    thread::spawn(move || serve(client, refusal, &seen));
                }
            });
        }
        Self {
            addr,
            stopping,
            seen,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(client: TcpStream, refusal: Option<&str>, seen: &Mutex<Vec<ProxiedRequest>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(reader_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let request_line = request_line.trim_end().to_string();
    let mut headers = Vec::new();
    let mut authorization = None;
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("proxy-authorization") => {
                authorization = Some(value.trim().to_string());
            }
            _ => headers.push(line),
        }
    }
    seen.lock().unwrap().push(ProxiedRequest {
        request_line: request_line.clone(),
        authorization,
    });
    let mut client = client;
    if let Some(status) = refusal {
        let _ = write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    if method == "CONNECT" {
        let Some(upstream) = upstream(target) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            return;
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
        {
            return;
        }
        pipe(client, reader, upstream, Vec::new());
        return;
    }
    // Absolute-form: `GET http://127.0.0.1:PORT/path HTTP/1.1`.
    let Some(rest) = target.strip_prefix("http://") else {
        return;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Some(upstream) = upstream(authority) else {
        return;
    };
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers {
        head.push_str(&header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    pipe(client, reader, upstream, head.into_bytes());
}

/// A connection to `authority` if it is on 127.0.0.1.
fn upstream(authority: &str) -> Option<TcpStream> {
    let address: SocketAddr = authority.parse().ok()?;
    if !address.ip().is_loopback() {
        return None;
    }
    TcpStream::connect(address).ok()
}

/// Copies both ways until either side closes; `first` goes upstream before the rest.
fn pipe(
    client: TcpStream,
    mut from_client: BufReader<TcpStream>,
    mut upstream: TcpStream,
    first: Vec<u8>,
) {
    let _ = upstream.set_read_timeout(Some(Duration::from_secs(60)));
    let buffered = from_client.buffer().to_vec();
    if upstream.write_all(&first).is_err() || upstream.write_all(&buffered).is_err() {
        return;
    }
    from_client.consume(buffered.len());
    let (Ok(mut to_upstream), Ok(mut from_upstream), Ok(mut to_client)) = (
        upstream.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
    ) else {
        return;
    };
    let upward = thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_upstream);
        let _ = to_upstream.shutdown(Shutdown::Write);
    });
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from_upstream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_client.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upward.join();
}
