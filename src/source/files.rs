//! The embedded-default source: JSONL files (or stdin), one event per line.
//!
//! A directory input is read as `products.jsonl` then `ads.jsonl` (each
//! optional). Progress is stored per file in `<data_dir>/source-offsets.json`
//! after each acknowledged line, so a rerun resumes where the last one
//! stopped instead of reprocessing everything (stdin keeps no position).
//! The positions are shared with the source's ack handles, so lines are
//! acknowledged while the source waits for more input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{AckHandle, Acknowledge, EventSource, SourceError, SourceRecord};
use crate::events::Stream;

/// Reads events from JSONL files or stdin.
pub struct FileSource {
    max_line: usize,
    pending: Vec<(PathBuf, Stream)>,
    current: Option<Reader>,
    positions: Arc<Positions>,
}

/// Per file, the line after the last acknowledged one: what the source reads
/// from and its ack handles write, kept in `source-offsets.json`.
struct Positions {
    path: PathBuf,
    state: Mutex<PositionState>,
}

#[derive(Default)]
struct PositionState {
    offsets: BTreeMap<String, i64>,
    /// Moved (past blank lines) since last written.
    dirty: bool,
}

impl Positions {
    fn lock(&self) -> Result<MutexGuard<'_, PositionState>, SourceError> {
        self.state.lock().map_err(|_| SourceError::Commit("source position lock poisoned".into()))
    }

    /// Write `state` atomically (temp file + rename). Called under the lock,
    /// so concurrent acks never interleave their writes.
    fn persist(&self, state: &mut PositionState) -> Result<(), SourceError> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&state.offsets).map_err(|e| SourceError::Commit(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = tmp.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| SourceError::Commit(format!("{}: {e}", self.path.display())))?;
        state.dirty = false;
        Ok(())
    }

    /// A blank line carries nothing, so the position may skip it, but only
    /// when every line before it is acknowledged (else it would pass them).
    fn skip_blank(&self, topic: &str, line: i64) -> Result<(), SourceError> {
        let mut state = self.lock()?;
        if state.offsets.get(topic).copied().unwrap_or(0) == line {
            state.offsets.insert(topic.to_string(), line + 1);
            state.dirty = true;
        }
        Ok(())
    }

    /// Where reading `topic` resumes.
    fn resume_at(&self, topic: &str) -> Result<i64, SourceError> {
        Ok(self.lock()?.offsets.get(topic).copied().unwrap_or(0))
    }
}

impl Acknowledge for Positions {
    fn ack(&self, record: &SourceRecord) -> Result<(), SourceError> {
        if record.topic == "stdin" {
            return Ok(());
        }
        let mut state = self.lock()?;
        state.offsets.insert(record.topic.clone(), record.offset + 1);
        self.persist(&mut state)
    }
}

struct Reader {
    topic: String,
    stream: Stream,
    lines: Box<dyn AsyncBufRead + Send + Unpin>,
    next_offset: i64,
    persist: bool,
    /// Longest line kept in memory (payload limit + 2 for the line end).
    max_line: usize,
}

impl FileSource {
    /// Open `input` (directory, file or `-`), resuming from offsets kept in
    /// `data_dir`; lines longer than `max_payload_bytes` are cut (and rejected downstream).
    pub fn open(input: &Path, data_dir: &Path, max_payload_bytes: usize) -> Result<Self, SourceError> {
        let io = |reason: String| SourceError::Io { path: input.display().to_string(), reason };
        let pending = if input == Path::new("-") {
            vec![(input.to_path_buf(), Stream::Mixed)]
        } else if input.is_dir() {
            let found: Vec<_> = [("products.jsonl", Stream::Products), ("ads.jsonl", Stream::Ads)]
                .into_iter()
                .map(|(name, stream)| (input.join(name), stream))
                .filter(|(p, _)| p.exists())
                .collect();
            if found.is_empty() {
                return Err(io("directory has neither products.jsonl nor ads.jsonl".into()));
            }
            found
        } else if input.is_file() {
            vec![(input.to_path_buf(), Stream::Mixed)]
        } else {
            return Err(io("no such file or directory (source.input)".into()));
        };
        let offsets_path = data_dir.join("source-offsets.json");
        let offsets = match std::fs::read(&offsets_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SourceError::Io {
                path: offsets_path.display().to_string(),
                reason: format!("corrupt offsets file ({e}); delete it to reprocess the input"),
            })?,
            Err(_) => BTreeMap::new(),
        };
        let mut pending = pending;
        pending.reverse();
        let positions =
            Arc::new(Positions { path: offsets_path, state: Mutex::new(PositionState { offsets, dirty: false }) });
        Ok(Self { max_line: max_payload_bytes.saturating_add(2), pending, current: None, positions })
    }

    async fn open_next(&mut self) -> Result<bool, SourceError> {
        let Some((path, stream)) = self.pending.pop() else { return Ok(false) };
        if path == Path::new("-") {
            self.current = Some(Reader {
                topic: "stdin".into(),
                stream,
                lines: Box::new(BufReader::new(tokio::io::stdin())),
                next_offset: 0,
                persist: false,
                max_line: self.max_line,
            });
            return Ok(true);
        }
        let topic = std::fs::canonicalize(&path).unwrap_or(path.clone()).display().to_string();
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| SourceError::Io { path: topic.clone(), reason: e.to_string() })?;
        let mut reader = Reader {
            topic,
            stream,
            lines: Box::new(BufReader::new(file)),
            next_offset: 0,
            persist: true,
            max_line: self.max_line,
        };
        let resume = self.positions.resume_at(&reader.topic)?;
        while reader.next_offset < resume && read_line(&mut reader).await?.is_some() {}
        if resume > 0 {
            tracing::info!(file = %reader.topic, skipped = resume, "resuming after lines already processed");
        }
        self.current = Some(reader);
        Ok(true)
    }
}

/// Read one line, keeping at most `reader.max_line` bytes of it: a longer
/// line is still consumed to its end, but only its head is kept (enough for
/// the size check to reject it), so a huge line cannot exhaust memory.
async fn read_line(reader: &mut Reader) -> Result<Option<Vec<u8>>, SourceError> {
    let io = |e: std::io::Error, topic: &str| SourceError::Io { path: topic.to_string(), reason: e.to_string() };
    let mut buf = Vec::new();
    let mut seen_any = false;
    loop {
        let chunk = reader.lines.fill_buf().await.map_err(|e| io(e, &reader.topic))?;
        if chunk.is_empty() {
            break;
        }
        seen_any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = reader.max_line.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.lines.consume(take);
        if done {
            break;
        }
    }
    if !seen_any {
        return Ok(None);
    }
    reader.next_offset += 1;
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

#[async_trait]
impl EventSource for FileSource {
    async fn next(&mut self) -> Result<Option<SourceRecord>, SourceError> {
        loop {
            if self.current.is_none() && !self.open_next().await? {
                return Ok(None);
            }
            let Some(reader) = self.current.as_mut() else { continue };
            match read_line(reader).await? {
                None => self.current = None,
                Some(line) if line.iter().all(u8::is_ascii_whitespace) => {
                    if reader.persist {
                        self.positions.skip_blank(&reader.topic, reader.next_offset - 1)?;
                    }
                }
                Some(line) => {
                    return Ok(Some(SourceRecord {
                        stream: reader.stream,
                        topic: reader.topic.clone(),
                        partition: 0,
                        offset: reader.next_offset - 1,
                        key: None,
                        payload: Some(line),
                    }));
                }
            }
        }
    }

    fn ack_handle(&self) -> AckHandle {
        AckHandle::new(self.positions.clone())
    }

    async fn close(&mut self) -> Result<(), SourceError> {
        // Positions moved past trailing blank lines are not written by any ack.
        let mut state = self.positions.lock()?;
        if state.dirty { self.positions.persist(&mut state) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_products_then_ads_and_resumes_after_acked_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in");
        std::fs::create_dir(&input).expect("mkdir");
        std::fs::write(input.join("products.jsonl"), "p0\n\np2\n").expect("write");
        std::fs::write(input.join("ads.jsonl"), "a0\n").expect("write");
        let data = dir.path().join("data");

        let mut src = FileSource::open(&input, &data, 100).expect("open");
        let acks = src.ack_handle();
        let mut seen = Vec::new();
        while let Some(r) = src.next().await.expect("next") {
            seen.push((
                r.stream,
                r.offset,
                String::from_utf8(r.payload.clone().unwrap_or_default()).unwrap_or_default(),
            ));
            if seen.len() <= 2 {
                acks.ack(&r).expect("ack");
            }
        }
        assert_eq!(
            seen,
            vec![(Stream::Products, 0, "p0".into()), (Stream::Products, 2, "p2".into()), (Stream::Ads, 0, "a0".into())]
        );

        // p0 and p2 were acked, a0 was not: a second run sees only a0.
        let mut again = FileSource::open(&input, &data, 100).expect("reopen");
        let r = again.next().await.expect("next").expect("a0 again");
        assert_eq!(r.payload.as_deref(), Some(&b"a0"[..]));
        assert!(again.next().await.expect("next").is_none());
    }

    #[tokio::test]
    async fn acks_while_reading_on_and_blank_lines_never_pass_an_unacked_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, "l0\n\nl2\n\n\n").expect("write");
        let data = dir.path().join("data");
        let mut src = FileSource::open(&file, &data, 100).expect("open");
        let acks = src.ack_handle();
        let l0 = src.next().await.expect("next").expect("l0");
        // Reading on past the blank line 1 while l0 is unacknowledged.
        let l2 = src.next().await.expect("next").expect("l2");
        assert_eq!(l2.offset, 2);
        let resumed = |data: &Path| {
            let text = std::fs::read_to_string(data.join("source-offsets.json")).unwrap_or_default();
            serde_json::from_str::<BTreeMap<String, i64>>(&text).unwrap_or_default().into_values().next()
        };
        assert_eq!(resumed(&data), None, "nothing acknowledged, nothing written");
        acks.ack(&l0).expect("ack l0");
        assert_eq!(resumed(&data), Some(1), "only l0 is done: the blank line after it was read while l0 was pending");
        acks.ack(&l2).expect("ack l2");
        assert_eq!(resumed(&data), Some(3));
        assert!(src.next().await.expect("next").is_none(), "only blank lines left");
        src.close().await.expect("close");
        assert_eq!(resumed(&data), Some(5), "close writes the position moved past the trailing blank lines");
    }

    #[tokio::test]
    async fn huge_lines_are_cut_not_buffered_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("events.jsonl");
        std::fs::write(&file, format!("{}\nnext\n", "x".repeat(1_000_000))).expect("write");
        let mut src = FileSource::open(&file, dir.path(), 100).expect("open");
        let huge = src.next().await.expect("next").expect("line");
        assert_eq!(huge.payload.map(|p| p.len()), Some(102), "kept only the head");
        let next = src.next().await.expect("next").expect("line");
        assert_eq!(next.payload.as_deref(), Some(&b"next"[..]));
        assert_eq!(next.offset, 1);
    }

    #[test]
    fn missing_input_names_the_setting() {
        let err = FileSource::open(Path::new("/no/such/dir"), Path::new("/tmp"), 100).err().expect("error");
        assert!(err.to_string().contains("source.input"), "{err}");
    }
}
