//! A proxy on 127.0.0.1 in front of dynalite whose answers can lie: it forwards every
//! request, reads dynalite's answer, and for every `every`-th `PutItem` sends the client
//! `500 Internal Server Error` instead. The write was applied; the client cannot know. That
//! is DynamoDB's ambiguous answer (a 500 or a timeout after the write), which the SDK then
//! retries against the new version.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// A running proxy; it stops accepting when dropped.
pub struct AmbiguousProxy {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    puts: Arc<AtomicU64>,
    lied: Arc<AtomicU64>,
}

/// The counters the connections share.
#[derive(Clone)]
struct Counts {
    every: u64,
    puts: Arc<AtomicU64>,
    lied: Arc<AtomicU64>,
}

impl AmbiguousProxy {
    /// A proxy to `target` that answers every `every`-th PutItem with a 500 after applying it.
    pub fn start(target: SocketAddr, every: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopping = Arc::new(AtomicBool::new(false));
        let counts = Counts {
            every,
            puts: Arc::new(AtomicU64::new(0)),
            lied: Arc::new(AtomicU64::new(0)),
        };
        {
            let (stopping, counts) = (Arc::clone(&stopping), counts.clone());
            thread::spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let counts = counts.clone();
                    thread::spawn(move || relay(client, target, &counts));
                }
            });
        }
        Self {
            addr,
            stopping,
            puts: counts.puts,
            lied: counts.lied,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// PutItem requests forwarded.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }

    /// PutItem requests applied and answered 500.
    pub fn lied(&self) -> u64 {
        self.lied.load(Ordering::SeqCst)
    }
}

impl Drop for AmbiguousProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// One HTTP/1.1 message: its head (lines, with CRLFs) and body.
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn bytes(&self) -> Vec<u8> {
        [self.head.as_bytes(), &self.body].concat()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, value) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// Reads one message with a `Content-Length` body (what the SDK and dynalite send);
/// `None` at the end of the connection.
fn read_message(reader: &mut BufReader<TcpStream>) -> Option<Message> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    let length: usize = message
        .header("content-length")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    message.body = vec![0; length];
    reader.read_exact(&mut message.body).ok()?;
    Some(message)
}

/// Relays requests of one client connection, one at a time, over one upstream connection.
fn relay(client: TcpStream, target: SocketAddr, counts: &Counts) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(client_reader), Ok(upstream_reader)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let (mut client_reader, mut upstream_reader) = (
        BufReader::new(client_reader),
        BufReader::new(upstream_reader),
    );
    // Each message goes out in one write, without Nagle's wait: a write per event.
    let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
    let (mut client, mut upstream) = (client, upstream);
    while let Some(request) = read_message(&mut client_reader) {
        let put = request
            .header("x-amz-target")
            .is_some_and(|target| target.ends_with(".PutItem"));
        if upstream.write_all(&request.bytes()).is_err() {
            break;
        }
        let Some(response) = read_message(&mut upstream_reader) else {
            break;
        };
        let lie =
            put && (counts.puts.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(counts.every);
        let sent = if lie {
            counts.lied.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"the test's ambiguous answer"}"#;
            write!(
                client,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/x-amz-json-1.0\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            client.write_all(&response.bytes())
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = upstream.shutdown(Shutdown::Both);
}
