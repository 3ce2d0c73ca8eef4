//! The real `adrec run` binary as a child process, reading events from its
//! stdin (so it keeps running until the test closes it), with JSON logs and
//! its HTTP server on a port the OS picks (read back from the log).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::prom;

/// A running worker.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where its HTTP endpoints listen.
    pub addr: SocketAddr,
    /// Its data dir (store, `out/lists/<ad>.json`, ...).
    pub data_dir: PathBuf,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    /// Start `adrec run --input -` with a config under `root` (fetched model,
    /// private networks allowed for the 127.0.0.1 image server).
    pub fn start(root: &Path) -> Worker {
        let config = super::config(root, Path::new("-"));
        let config_path = root.join("worker.toml");
        std::fs::write(&config_path, config.to_toml()).expect("write worker config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_adrec"))
            .args(["--log-json", "run", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn adrec");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["fields"]["message"].as_str().is_some_and(|m| m.starts_with("serving /healthz"))
                    && let Some(addr) = v["fields"]["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                if let Ok(mut logs) = kept.lock() {
                    logs.push(line);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the worker never logged its HTTP address; logs:\n{}",
                    logs.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        let stdin = child.stdin.take();
        Worker { child, stdin, addr, data_dir: config.data_dir, logs }
    }

    /// Feed event lines to the worker.
    pub fn send(&mut self, lines: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(lines.as_bytes()).expect("write to the worker's stdin");
        if !lines.ends_with('\n') {
            stdin.write_all(b"\n").expect("write newline");
        }
        stdin.flush().expect("flush");
    }

    /// Every log line so far (JSON objects).
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// GET `path` on the worker's HTTP server: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}{path}", self.addr)).await.expect("HTTP request to the worker");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// Scrape and parse `/metrics`.
    pub async fn metrics(&self) -> prom::Exposition {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        prom::parse(&body).unwrap_or_else(|e| panic!("/metrics is not valid Prometheus text: {e}"))
    }

    /// Wait until `adrec_events_total` adds up to `n` (a hang guard, not a speed check).
    pub async fn wait_for_events(&self, n: f64) -> prom::Exposition {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let m = self.metrics().await;
            if m.sum("adrec_events_total", &[]) >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not finish {n} events; at {}; last logs:\n{}",
                m.sum("adrec_events_total", &[]),
                self.logs().iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Close stdin (end of input) and wait for the worker to exit.
    pub async fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        tokio::task::spawn_blocking(move || self.child.wait().expect("wait for the worker")).await.expect("join")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // A failed test must not leave the worker running.
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
