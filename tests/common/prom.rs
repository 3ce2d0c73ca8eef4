//! A strict little parser of the Prometheus text exposition format, enough
//! to check what `/metrics` serves: every sample line must parse.

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Series name (with `_bucket`/`_sum`/`_count` suffixes as served).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// Parsed exposition: samples plus the declared `# TYPE` of each family.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Metric family → counter/gauge/histogram/summary.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Samples of `name` whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
            .collect()
    }

    /// Sum of the values of [`Exposition::find`].
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).iter().map(|s| s.value).sum()
    }
}

/// Parse `text`, failing on the first malformed line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {}: bad TYPE: {line}", n + 1));
            };
            out.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        out.samples.push(sample(line).map_err(|e| format!("line {}: {e}: {line}", n + 1))?);
    }
    Ok(out)
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end;
        loop {
            // key
            let mut key = String::new();
            loop {
                match chars.next() {
                    Some((_, '=')) => break,
                    Some((i, '}')) if key.is_empty() => {
                        end = i;
                        rest = &body[end + 1..];
                        return finish(name, labels, rest);
                    }
                    Some((_, c)) if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                    _ => return Err("bad label name".into()),
                }
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err("bad escape".into()),
                    },
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated label value".into()),
                }
            }
            labels.insert(key, value);
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    end = i;
                    break;
                }
                _ => return Err("expected , or }".into()),
            }
        }
        rest = &body[end + 1..];
    }
    finish(name, labels, rest)
}

fn finish(name: &str, labels: BTreeMap<String, String>, rest: &str) -> Result<Sample, String> {
    let mut parts = rest.split_whitespace();
    let raw = parts.next().ok_or("no value")?;
    let value = match raw {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|e| format!("bad value {v}: {e}"))?,
    };
    // An optional timestamp may follow; nothing else.
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    Ok(Sample { name: name.to_string(), labels, value })
}
