//! The embedded-default sink: an append-only `lists.jsonl` (the same
//! sequence of messages the Kafka topic would carry), the latest list per ad
//! as `lists/<ad>.json`, and `dlq.jsonl`. Every write is fsynced before the
//! call returns, because returning is what lets the source move on.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Mutex;

use super::{DeadLetter, ListSink, SinkError};
use crate::events::RecommendationList;

/// Writes lists and dead letters to files under one directory.
pub struct FileSink {
    dir: PathBuf,
    // Serialises appends so lines never interleave.
    lock: Mutex<()>,
}

impl FileSink {
    /// Create the output directory if needed.
    pub fn open(dir: &Path) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir.join("lists"))
            .map_err(|e| SinkError::Unavailable(format!("{}: {e}", dir.display())))?;
        Ok(Self { dir: dir.to_path_buf(), lock: Mutex::new(()) })
    }

    /// Path of the latest-list file of an ad.
    pub fn list_path(&self, ad_id: &str) -> PathBuf {
        self.dir.join("lists").join(format!("{}.json", file_safe(ad_id)))
    }

    /// The append-only log of published messages.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("lists.jsonl")
    }

    /// The dead-letter file.
    pub fn dlq_path(&self) -> PathBuf {
        self.dir.join("dlq.jsonl")
    }

    /// The latest list of every ad (`lists/<ad>.json`), e.g. to seed the preview at start.
    /// Unreadable files are skipped with a warning: they are outputs, not state.
    pub fn stored_lists(&self) -> Vec<RecommendationList> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("lists")) else { return Vec::new() };
        let mut lists = Vec::new();
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(list) => lists.push(list),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping unreadable list file"),
            }
        }
        lists
    }

    fn append(&self, path: &Path, value: &serde_json::Value) -> Result<(), SinkError> {
        let err = |e: std::io::Error| SinkError::Unavailable(format!("{}: {e}", path.display()));
        let mut line = serde_json::to_vec(value).map_err(|e| SinkError::Unavailable(e.to_string()))?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
        f.write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)
    }
}

/// Escape an id into a file name: ids may contain `/`, `..` or anything.
fn file_safe(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[async_trait]
impl ListSink for FileSink {
    async fn publish(&self, ad_id: &str, _partition: i32, list: Option<&RecommendationList>) -> Result<(), SinkError> {
        let _guard = self.lock.lock().await;
        let message = match list {
            Some(l) => json!({ "key": ad_id, "value": l }),
            None => json!({ "key": ad_id, "value": null }),
        };
        self.append(&self.log_path(), &message)?;
        let path = self.list_path(ad_id);
        let err = |e: std::io::Error| SinkError::Unavailable(format!("{}: {e}", path.display()));
        match list {
            Some(l) => {
                let tmp = path.with_extension("json.tmp");
                let bytes = serde_json::to_vec_pretty(l).map_err(|e| SinkError::Unavailable(e.to_string()))?;
                std::fs::write(&tmp, bytes).map_err(err)?;
                std::fs::rename(&tmp, &path).map_err(err)?;
            }
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
                _ => {}
            },
        }
        Ok(())
    }

    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), SinkError> {
        let _guard = self.lock.lock().await;
        let r = &letter.record;
        let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        let value = json!({
            "error": letter.error,
            "source": { "topic": r.topic, "partition": r.partition, "offset": r.offset },
            "key": text(&r.key),
            "payload": text(&r.payload),
        });
        self.append(&self.dlq_path(), &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Stream;
    use crate::source::SourceRecord;

    #[tokio::test]
    async fn lists_tombstones_and_dead_letters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = FileSink::open(dir.path()).expect("open");
        let list = RecommendationList {
            ad_id: "a/../b".into(),
            version: 1,
            model: "m".into(),
            generated_at: chrono::Utc::now(),
            items: vec![],
        };
        sink.publish("a/../b", 0, Some(&list)).await.expect("publish");
        assert!(sink.list_path("a/../b").starts_with(dir.path().join("lists")));
        assert!(sink.list_path("a/../b").exists());
        std::fs::write(dir.path().join("lists/broken.json"), "{").expect("write");
        let stored = sink.stored_lists();
        assert_eq!(stored, vec![list.clone()], "the list is read back, the broken file skipped");
        sink.publish("a/../b", 0, None).await.expect("tombstone");
        assert!(!sink.list_path("a/../b").exists());
        let log = std::fs::read_to_string(sink.log_path()).expect("log");
        let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["value"]["version"], 1);
        assert!(lines[1]["value"].is_null());

        let record = SourceRecord {
            stream: Stream::Products,
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key: None,
            payload: Some(b"{bad".to_vec()),
        };
        sink.dead_letter(&DeadLetter { error: "invalid JSON".into(), record }).await.expect("dlq");
        let dlq: serde_json::Value =
            serde_json::from_str(std::fs::read_to_string(sink.dlq_path()).expect("dlq").trim()).expect("json");
        assert_eq!(dlq["error"], "invalid JSON");
        assert_eq!(dlq["source"]["offset"], 7);
        assert_eq!(dlq["payload"], "{bad");
    }
}
