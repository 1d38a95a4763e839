//! A scriptable SSE server over real TCP on 127.0.0.1.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// A request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One step of a response body.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes as one chunk (and flush).
    Bytes(Vec<u8>),
    /// Wait before the next step.
    Pause(Duration),
    /// Wait until the test opens the gate (or the server stops).
    Wait(Gate),
}

/// A point in a response that the test opens once it has seen what it waits for, so a
/// scenario's phases follow events, not the clock.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    /// Lets every response waiting here go on.
    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    /// Blocks until the gate opens (true) or the server stops (false).
    fn pass(&self, stopping: &AtomicBool) -> bool {
        let (open, changed) = &*self.0;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            if stopping.load(Ordering::SeqCst) {
                return false;
            }
            // Bounded, so a stopping server is noticed.
            is_open = changed
                .wait_timeout(is_open, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        true
    }
}

/// How a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The terminating zero-length chunk: a clean end of stream.
    Clean,
    /// Close the socket without the terminating chunk (a dropped connection).
    Drop,
    /// Keep the connection open, sending nothing, for this long, then drop it.
    Stall(Duration),
}

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<Step>,
    pub end: End,
}

impl Response {
    /// `200 text/event-stream` with the given body steps and a clean end.
    pub fn stream(body: Vec<Step>) -> Self {
        Self {
            status: 200,
            headers: vec![(
                "Content-Type".into(),
                "text/event-stream; charset=utf-8".into(),
            )],
            body,
            end: End::Clean,
        }
    }

    /// `200 text/event-stream` with one chunk of text.
    pub fn text(body: &str) -> Self {
        Self::stream(vec![Step::Bytes(body.as_bytes().to_vec())])
    }

    /// Any status and content type, with a plain body.
    pub fn plain(status: u16, content_type: &str, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: vec![Step::Bytes(body.as_bytes().to_vec())],
            end: End::Clean,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets how the response ends.
    pub fn ending(mut self, end: End) -> Self {
        self.end = end;
        self
    }
}

/// What to do with an accepted connection.
pub enum Answer {
    Respond(Response),
    /// Close the connection before sending any byte.
    CloseImmediately,
}

type Script = dyn Fn(usize, &Request) -> Answer + Send + Sync;

/// A running server; stops when dropped.
pub struct SseServer {
    addr: SocketAddr,
    scheme: &'static str,
    stopping: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    body_bytes_sent: Arc<AtomicU64>,
}

impl SseServer {
    /// Starts a server whose `script` answers the n-th connection (from 0).
    pub fn start(script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_with(None, script)
    }

    /// The same over TLS with `tls` (see `support::tls::TestCa`): `url` gives https URLs.
    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::start_with(Some(tls), script)
    }

    fn start_with(
        tls: Option<Arc<rustls::ServerConfig>>,
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let stopping = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let body_bytes_sent = Arc::new(AtomicU64::new(0));
        let script: Arc<Script> = Arc::new(script);
        {
            let stopping = Arc::clone(&stopping);
            let requests = Arc::clone(&requests);
            let connections = Arc::clone(&connections);
            let sent = Arc::clone(&body_bytes_sent);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let index = connections.fetch_add(1, Ordering::SeqCst);
                    let script = Arc::clone(&script);
                    let requests = Arc::clone(&requests);
                    let stopping = Arc::clone(&stopping);
                    let sent = Arc::clone(&sent);
                    let tls = tls.clone();
                    thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = stream.set_nodelay(true);
                        let Some(tls) = tls else {
                            serve(stream, index, &*script, &requests, &stopping, &sent);
                            return;
                        };
                        let Ok(connection) = rustls::ServerConnection::new(tls) else {
                            return;
                        };
                        let stream = rustls::StreamOwned::new(connection, stream);
                        serve(stream, index, &*script, &requests, &stopping, &sent);
                    });
                }
            });
        }
        Self {
            addr,
            scheme,
            stopping,
            requests,
            connections,
            body_bytes_sent,
        }
    }

    /// Always answers with the same response.
    pub fn always(response: Response) -> Self {
        Self::start(move |_, _| Answer::Respond(response.clone()))
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The server's `host:port`.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// Body bytes written to clients so far (the socket took them: a client that stops
    /// reading stops this count once the TCP buffers are full).
    pub fn body_bytes_sent(&self) -> u64 {
        self.body_bytes_sent.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A connection, plain or TLS.
trait Connection: std::io::Read + std::io::Write {
    /// Closes the sending side (after a clean end of stream).
    fn finish_writing(&mut self);
    /// Sends what is still queued (a TLS alert after a refused handshake) before closing.
    fn flush_pending(&mut self) {}
}

impl Connection for TcpStream {
    fn finish_writing(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl Connection for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn finish_writing(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
    }

    fn flush_pending(&mut self) {
        while self.conn.wants_write() {
            if self.conn.write_tls(&mut self.sock).is_err() {
                return;
            }
        }
        // A lingering close: closing with the client's request still unread would send a
        // reset, and the client would lose the alert.
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        let _ = self.sock.set_read_timeout(Some(Duration::from_secs(2)));
        let mut sink = [0u8; 4096];
        for _ in 0..64 {
            match std::io::Read::read(&mut self.sock, &mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

fn serve(
    mut stream: impl Connection,
    index: usize,
    script: &Script,
    requests: &Mutex<Vec<Request>>,
    stopping: &AtomicBool,
    body_bytes_sent: &AtomicU64,
) {
    let Some(request) = read_request(&mut stream) else {
        // A refused TLS handshake has queued its alert: the client should hear why.
        stream.flush_pending();
        return;
    };
    requests
        .lock()
        .expect("requests lock")
        .push(request.clone());
    let response = match script(index, &request) {
        Answer::CloseImmediately => return,
        Answer::Respond(response) => response,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for step in &response.body {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match step {
            Step::Bytes(bytes) if bytes.is_empty() => {}
            Step::Bytes(bytes) => {
                let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
                chunk.extend_from_slice(bytes);
                chunk.extend_from_slice(b"\r\n");
                if stream
                    .write_all(&chunk)
                    .and_then(|()| stream.flush())
                    .is_err()
                {
                    return;
                }
                body_bytes_sent.fetch_add(bytes.len() as u64, Ordering::SeqCst);
            }
            Step::Pause(duration) => thread::sleep(*duration),
            Step::Wait(gate) => {
                if !gate.pass(stopping) {
                    return;
                }
            }
        }
    }
    match response.end {
        End::Clean => {
            let _ = stream.write_all(b"0\r\n\r\n");
            let _ = stream.flush();
            // Let the client read to the end before the socket closes.
            stream.finish_writing();
            thread::sleep(Duration::from_millis(50));
        }
        End::Drop => {}
        End::Stall(duration) => thread::sleep(duration),
    }
}

fn read_request(stream: &mut impl std::io::Read) -> Option<Request> {
    // Byte by byte, so that nothing after the head is read ahead (the requests have no body).
    let mut reader = BufReader::with_capacity(1, stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(Request { path, headers });
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    None
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        204 => "No Content",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}
