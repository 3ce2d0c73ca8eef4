//! A minimal Chrome DevTools Protocol client for the browser test: starts
//! Debian's headless `chromium` (never downloads one), connects to its page
//! over the DevTools WebSocket and evaluates, navigates and screenshots.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The Chromium binary: `$CHROMIUM`, else `chromium` / `chromium-browser` on PATH.
/// Panics with the fix when there is none: the browser test must not skip.
pub fn find_chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is required by the browser test and was not found on PATH. \
         Fix: `apt-get install -y chromium` (scripts/test does this), \
         or set CHROMIUM=/path/to/chromium"
    );
}

/// A headless Chromium process with its own throwaway profile.
pub struct Browser {
    child: Child,
    port: u16,
}

impl Browser {
    /// Start `binary` headless with remote debugging on a free port of 127.0.0.1.
    pub fn launch(binary: &Path, profile: &Path) -> Browser {
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--hide-scrollbars",
                "--window-size=1280,1100",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/<id>"
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1)
                    && let Some(port) = rest.split('/').next().and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(Ok(port));
                } else if seen.len() < 50 {
                    seen.push(line);
                }
            }
            let _ = tx.send(Err(seen.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(port)) => Browser { child, port },
            Ok(Err(output)) => panic!("chromium exited without a DevTools endpoint:\n{output}"),
            Err(_) => {
                let _ = child.kill();
                panic!("chromium did not report its DevTools endpoint within 60 s");
            }
        }
    }

    /// Connect to the browser's (only) page.
    pub async fn page(&self) -> Page {
        let body = reqwest::get(format!("http://127.0.0.1:{}/json/list", self.port))
            .await
            .expect("DevTools /json/list")
            .text()
            .await
            .expect("DevTools /json/list body");
        let list: Value = serde_json::from_str(&body).expect("DevTools JSON");
        let ws = list
            .as_array()
            .and_then(|targets| targets.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target in {list}"))
            .to_string();
        let (socket, _) = tokio_tungstenite::connect_async(ws).await.expect("DevTools WebSocket");
        Page { socket, next_id: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One browser tab.
pub struct Page {
    socket: Socket,
    next_id: u64,
}

impl Page {
    /// Send a command and wait for its result (events in between are ignored).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(msg.to_string())).await.expect("send to DevTools");
        loop {
            let frame = self.socket.next().await.expect("DevTools closed").expect("DevTools read");
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if reply["id"] == id {
                if let Some(err) = reply.get("error") {
                    panic!("{method} failed: {err}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// Load `url` (returns once navigation is committed; use [`Page::wait_for`] for content).
    pub async fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(r.get("errorText").is_none(), "navigation to {url} failed: {r}");
    }

    /// Evaluate a JavaScript expression in the page; its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }))
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("`{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluate `expression` until `done` accepts its value (a hang guard of
    /// `limit`, not a speed check); panics naming `what` with the last value.
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        limit: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(expression).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "page never showed {what}; last value: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a PNG of the whole page.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true })).await;
        let data = r["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD.decode(data).expect("base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}
