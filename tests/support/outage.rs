//! A TCP gateway on 127.0.0.1 in front of a real server (kinesalite, dynalite) that is down
//! for its first seconds, then forwards every byte both ways: an AWS endpoint that comes
//! back. Down means either no listener at all (connections refused) or a listener that
//! answers every HTTP request with `500 Internal Server Error`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How the gateway is down during its outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// Nothing listens on the port: every connection is refused.
    Refusing,
    /// Every request is read and answered `500 Internal Server Error`.
    Answering500,
}

/// A running gateway; it stops accepting when dropped.
pub struct OutageGateway {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    answered_500: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    describes: Arc<AtomicU64>,
}

/// What the client sends when it calls DescribeStreamSummary (the `X-Amz-Target` header).
const DESCRIBE_TARGET: &[u8] = b"Kinesis_20131202.DescribeStreamSummary";

impl OutageGateway {
    /// A gateway to `target` that is `down` for `outage` from now.
    pub fn start(target: SocketAddr, down: Down, outage: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let answered_500 = Arc::new(AtomicU64::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let describes = Arc::new(AtomicU64::new(0));
        let up_at = Instant::now() + outage;
        let listener = match down {
            Down::Refusing => {
                // Freed now and bound again when the outage ends: refused until then.
                drop(listener);
                None
            }
            Down::Answering500 => Some(listener),
        };
        {
            let (stopping, answered_500, forwarded, describes) = (
                Arc::clone(&stopping),
                Arc::clone(&answered_500),
                Arc::clone(&forwarded),
                Arc::clone(&describes),
            );
            thread::spawn(move || {
                let listener = match listener {
                    Some(listener) => listener,
                    None => {
                        thread::sleep(up_at.saturating_duration_since(Instant::now()));
                        bind_again(addr)
                    }
                };
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    if Instant::now() < up_at {
                        answered_500.fetch_add(1, Ordering::SeqCst);
                        thread::spawn(move || answer_500(client));
                    } else {
                        forwarded.fetch_add(1, Ordering::SeqCst);
                        let describes = Arc::clone(&describes);
                        thread::spawn(move || forward(client, target, &describes));
                    }
                }
            });
        }
        Self {
            addr,
            stopping,
            answered_500,
            forwarded,
            describes,
        }
    }

    /// A gateway that is up from the start: a counting proxy.
    pub fn up(target: SocketAddr) -> Self {
        Self::start(target, Down::Answering500, Duration::ZERO)
    }

    /// DescribeStreamSummary calls forwarded (Kinesis' JSON protocol names the operation in
    /// the `X-Amz-Target` header of each request).
    pub fn describe_calls(&self) -> u64 {
        self.describes.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered 500 during the outage.
    pub fn answered_500(&self) -> u64 {
        self.answered_500.load(Ordering::SeqCst)
    }

    /// Connections forwarded after the outage.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for OutageGateway {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Binds the port freed at the start (another process may hold it for a moment).
fn bind_again(addr: SocketAddr) -> TcpListener {
    for _ in 0..200 {
        if let Ok(listener) = TcpListener::bind(addr) {
            return listener;
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot bind {addr} again after the outage");
}

/// Reads one request (head and `Content-Length` body) and answers 500.
fn answer_500(client: TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(reader_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader_half);
    let mut length = 0usize;
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let mut client = client;
    let body = r#"{"__type":"InternalServerError","message":"the test's outage"}"#;
    let _ = write!(
        client,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.shutdown(Shutdown::Both);
}

/// Copies bytes both ways until either side closes, counting DescribeStreamSummary calls.
fn forward(client: TcpStream, target: SocketAddr, describes: &AtomicU64) {
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(mut client_reader), Ok(mut upstream_writer)) =
        (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let upstream_to_client = thread::spawn(move || {
        let (mut upstream, mut client) = (upstream, client);
        let _ = std::io::copy(&mut upstream, &mut client);
        let _ = client.shutdown(Shutdown::Write);
    });
    // What the client sends, scanned for the operation's name as it passes; the tail of
    // each read is kept so that a name split across two reads is still seen once.
    let mut buffer = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let read = match client_reader.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if upstream_writer.write_all(&buffer[..read]).is_err() {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        let found = tail
            .windows(DESCRIBE_TARGET.len())
            .filter(|window| *window == DESCRIBE_TARGET)
            .count();
        describes.fetch_add(found as u64, Ordering::SeqCst);
        let keep = tail.len().min(DESCRIBE_TARGET.len() - 1);
        tail.drain(..tail.len() - keep);
    }
    let _ = upstream_writer.shutdown(Shutdown::Write);
    let _ = upstream_to_client.join();
}
