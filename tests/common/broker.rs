//! A real Kafka-protocol broker for the integration tests: an in-memory
//! `tansu` process on 127.0.0.1, installed (once, cached) by `scripts/broker`.
//!
//! Tansu quirks the tests must live with: a consumer-group join takes about
//! `session.timeout.ms / 2`, the in-memory storage never compacts (compacted
//! topics keep every record), there is no transaction isolation, and all data
//! is lost when the process stops (see [`Broker::restart`]).
//!
//! librdkafka pitfall seen here: dropping a consumer while a
//! `TopicPartitionList` it returned (`committed`, `committed_offsets`) is
//! still alive can hang the drop forever; drop those lists first.

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// How long `start`/`restart` wait for the broker to answer a metadata request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs tansu (`$0 "$@"`) and SIGKILLs it once its stdin pipe closes, i.e.
/// when `stop` drops the pipe or this test process dies in any way (even
/// SIGKILL), so no broker outlives its test. Exits when tansu exits.
const WATCHDOG: &str =
    r#""$0" "$@" </dev/null & pid=$!; exec 3<&0; { read -r _ <&3; kill -9 $pid 2>/dev/null; } & wait $pid"#;

/// A running in-memory tansu broker, killed on `stop` and on drop.
pub struct Broker {
    /// The `sh` watchdog whose child is tansu.
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

/// The tansu binary, installed by `scripts/broker path` once per process.
fn binary() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/broker");
        let out = Command::new(&script)
            .arg("path")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(out.status.success(), "`{} path` failed ({})", script.display(), out.status);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!path.is_empty(), "`{} path` printed nothing", script.display());
        PathBuf::from(path)
    })
}

/// Run an rdkafka future to completion from sync code, inside or outside a
/// tokio runtime (a fresh runtime on a scoped thread).
fn block_on<F: Future + Send>(fut: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a tokio runtime")
                .block_on(fut)
        })
        .join()
        .expect("broker fixture thread panicked")
    })
}

impl Broker {
    /// Start a fresh in-memory tansu on a free 127.0.0.1 port and wait until
    /// it answers a Kafka metadata request.
    pub fn start() -> Broker {
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("find a free 127.0.0.1 port").port();
        let log = std::env::temp_dir().join(format!("adrec-tansu-{port}.log"));
        let mut broker = Broker { child: None, port, log };
        broker.spawn();
        broker
    }

    /// The bootstrap servers string, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Create `name` with `partitions` partitions (replication factor 1),
    /// with `cleanup.policy=compact` when `compacted`. Panics on any failure,
    /// including an already existing topic.
    pub fn create_topic(&self, name: &str, partitions: i32, compacted: bool) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("create rdkafka AdminClient");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        if compacted {
            topic = topic.set("cleanup.policy", "compact");
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = block_on(admin.create_topics([&topic], &opts))
            .unwrap_or_else(|e| panic!("create topic {name:?} on {}: {e}", self.bootstrap()));
        for r in results {
            if let Err((t, code)) = r {
                panic!("create topic {t:?} on {}: {code:?}", self.bootstrap());
            }
        }
    }

    /// Kill the broker process (idempotent; also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the watchdog kills tansu, then exits
            let _ = child.wait();
        }
    }

    /// Stop and start again on the SAME port, so connected clients reconnect
    /// to it. The storage is in-memory: every topic, record, committed offset
    /// and idempotent-producer id is gone afterwards, so recreate topics.
    ///
    /// Clients that live across a restart fare badly (librdkafka 2.12.1):
    /// a consumer that was fetching a topic that comes back (recreated, or
    /// auto-created by a produce) gets a new topic id and the process dies
    /// with SIGSEGV; an idempotent producer retries UNKNOWN_PRODUCER_ID until
    /// `message.timeout.ms`. Create clients after the restart, or use
    /// [`Broker::pause`] for an outage that keeps state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Freeze the broker (SIGSTOP): connections stay open, nothing is
    /// answered, no state is lost. Undo with [`Broker::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Continue a broker frozen by [`Broker::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Send `sig` to the tansu process (the watchdog's child running `binary()`).
    fn signal(&self, sig: &str) {
        let sh = self.child.as_ref().expect("broker is stopped").id();
        let exe = std::fs::canonicalize(binary()).expect("canonical tansu path");
        let children = std::fs::read_to_string(format!("/proc/{sh}/task/{sh}/children"))
            .expect("list the watchdog's child processes");
        let pid = children
            .split_whitespace()
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe))
            .expect("tansu process under its watchdog");
        let status = Command::new("kill").arg(format!("-{sig}")).arg(pid).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
    }

    /// Spawn tansu on `self.port` and wait until it serves metadata.
    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.bootstrap());
        let log = File::create(&self.log).unwrap_or_else(|e| panic!("create {}: {e}", self.log.display()));
        let child = Command::new("sh")
            .args(["-c", WATCHDOG])
            .arg(binary())
            .args(["broker", "--cluster-id", "adrec-test", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    /// Poll a metadata request until it succeeds, the process dies, or
    /// `READY_TIMEOUT` passes (then panic, pointing at the log).
    fn wait_ready(&mut self) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .expect("create rdkafka BaseConsumer");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if consumer.fetch_metadata(None, Duration::from_millis(500)).is_ok() {
                return;
            }
            let child = self.child.as_mut().expect("broker child process");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("tansu on {} exited with {status}; log: {}", self.bootstrap(), self.log.display());
            }
            if Instant::now() > deadline {
                self.stop();
                panic!(
                    "tansu on {} did not answer metadata within {READY_TIMEOUT:?}; log: {}",
                    self.bootstrap(),
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
