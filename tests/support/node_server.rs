//! The local AWS API servers from npm (kinesalite, dynalite), each pinned in `tests/NAME`
//! with a `start.js`, run as child processes on 127.0.0.1. Shared by the host's tests and
//! the Kinesis producer's (`lib/kinesis-producer/tests/support`).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `node DIR/start.js`, killed on drop. Its stdin is a pipe from this process: if
/// the test process dies, the pipe closes and the server exits by itself.
pub struct NodeServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl NodeServer {
    /// Starts the server of the npm package `package` installed in `dir` and reads the port
    /// its `start.js` prints.
    pub fn start(dir: &Path, package: &str) -> Self {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "{package} is not installed: run scripts/setup.sh --tests (npm ci in {})",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("start.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (Node.js is needed for {package}): {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the server's stdout is piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("{package} printed no port: {e}"));
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{package} printed {line:?} instead of its port"));
        Self { child, port }
    }

    /// Its endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
