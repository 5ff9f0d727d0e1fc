//! Object key layout v1 (DESIGN.md): the one place that knows how a chunk's key
//! and a task's checkpoint key are spelled, shared by the sidecar and the shipper.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::fmt;

/// Width of the zero-padded offsets, so that keys sort in file order.
const OFFSET_DIGITS: usize = 15;
/// Largest offset that fits in `OFFSET_DIGITS` digits.
pub const MAX_OFFSET: u64 = 999_999_999_999_999;
pub const DEFAULT_KEY_PREFIX: &str = "logs";
pub const DEFAULT_CHECKPOINT_PREFIX: &str = "checkpoints";
pub const LAYOUT_VERSION: &str = "1";
/// Object metadata name carrying `LAYOUT_VERSION`.
pub const VERSION_METADATA: &str = "logdrop-version";

/// Everything outside `[A-Za-z0-9._-]` is percent-encoded in a key component.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkKey {
    pub prefix: String,
    pub cluster: String,
    pub task_id: String,
    pub file: String,
    pub generation: u64,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key is not under the prefix `{0}/`")]
    OutsidePrefix(String),
    #[error(
        "key does not have the v1 shape <prefix>/<cluster>/<task>/<file>/<gen>/<start>-<end>.gz"
    )]
    Shape,
    #[error("key component `{0}` is empty, `.`/`..`, or not valid percent-encoded UTF-8")]
    Component(String),
    #[error("`{0}` is not a generation number")]
    Generation(String),
    #[error("`{0}` is not a 15-digit <start>-<end> byte range with start <= end")]
    Range(String),
}

pub fn encode_component(raw: &str) -> String {
    utf8_percent_encode(raw, COMPONENT).to_string()
}

/// Decodes one key component, accepting only its canonical spelling (shared
/// by both layouts, so one object has exactly one key).
pub(crate) fn decode_component(encoded: &str) -> Result<String, KeyError> {
    let bad = || KeyError::Component(encoded.to_string());
    let ok_chars = encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%'));
    if !ok_chars || encoded.is_empty() || encoded == "." || encoded == ".." {
        return Err(bad());
    }
    let decoded = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| bad())?;
    // Only the canonical spelling is accepted, so one chunk has exactly one key.
    if encode_component(&decoded) != encoded {
        return Err(bad());
    }
    Ok(decoded.into_owned())
}

/// The `/`-separated components of a key after `<prefix>/`.
pub(crate) fn components<'k>(key: &'k str, prefix: &str) -> Result<Vec<&'k str>, KeyError> {
    key.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('/'))
        .map(|rest| rest.split('/').collect())
        .ok_or_else(|| KeyError::OutsidePrefix(prefix.to_string()))
}

fn parse_offset(s: &str) -> Option<u64> {
    (s.len() == OFFSET_DIGITS && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl ChunkKey {
    /// Parses a key as stored in S3 (already URL-decoded from the notification).
    pub fn parse(key: &str, prefix: &str) -> Result<Self, KeyError> {
        let parts = components(key, prefix)?;
        let [cluster, task_id, file, generation, range] = parts[..] else {
            return Err(KeyError::Shape);
        };
        let range_str = range.strip_suffix(".gz").ok_or(KeyError::Shape)?;
        let (start, end) = range_str
            .split_once('-')
            .and_then(|(a, b)| Some((parse_offset(a)?, parse_offset(b)?)))
            .filter(|(a, b)| a <= b)
            .ok_or_else(|| KeyError::Range(range.to_string()))?;
        let canonical_gen = generation
            .parse::<u64>()
            .ok()
            .filter(|g| g.to_string() == generation);
        let generation =
            canonical_gen.ok_or_else(|| KeyError::Generation(generation.to_string()))?;
        Ok(ChunkKey {
            prefix: prefix.to_string(),
            cluster: decode_component(cluster)?,
            task_id: decode_component(task_id)?,
            file: decode_component(file)?,
            generation,
            start,
            end,
        })
    }

    pub fn task(&self) -> TaskRef {
        TaskRef {
            cluster: self.cluster.clone(),
            task_id: self.task_id.clone(),
        }
    }
}

impl fmt::Display for ChunkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}/{:0w$}-{:0w$}.gz",
            self.prefix,
            encode_component(&self.cluster),
            encode_component(&self.task_id),
            encode_component(&self.file),
            self.generation,
            self.start,
            self.end,
            w = OFFSET_DIGITS
        )
    }
}

/// One ECS task: the unit that owns a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    pub cluster: String,
    pub task_id: String,
}

impl TaskRef {
    pub fn checkpoint_key(&self, checkpoint_prefix: &str) -> String {
        format!(
            "{}/{}/{}.json",
            checkpoint_prefix,
            encode_component(&self.cluster),
            encode_component(&self.task_id)
        )
    }
}

/// The stored keys a notification's key may stand for, most likely first:
/// decoded once (S3 notifications form-URL-encode keys, `+` for space) and as
/// delivered (whether EventBridge encodes is not documented). Only v1 chunk
/// keys are returned, each once. Both forms can be valid keys of different
/// objects (a file literally named `a%20b.log`), so a caller that finds no
/// object under the first must try the second before calling it missing.
pub fn notification_key_candidates(raw: &str, prefix: &str) -> Vec<String> {
    let once = decode_notification_key(raw);
    let mut out = Vec::with_capacity(2);
    for k in [once, raw.to_string()] {
        if ChunkKey::parse(&k, prefix).is_ok() && !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// A notification's key decoded once, as S3 notifications encode it.
pub fn decode_notification_key(raw: &str) -> String {
    let plus_as_space = raw.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ChunkKey {
        ChunkKey {
            prefix: "logs".into(),
            cluster: "prod".into(),
            task_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".into(),
            file: "localhost_access_log.2026-11-24.txt".into(),
            generation: 0,
            start: 0,
            end: 1_048_576,
        }
    }

    #[test]
    fn formats_the_design_example() {
        assert_eq!(
            sample().to_string(),
            "logs/prod/0f1e2d3c4b5a69788796a5b4c3d2e1f0/localhost_access_log.2026-11-24.txt/0/000000000000000-000000001048576.gz"
        );
    }

    #[test]
    fn round_trips_odd_names() {
        let mut k = sample();
        k.cluster = "my cluster/ü".into();
        k.file = "app log+1%.txt".into();
        k.generation = 12;
        k.start = 5;
        k.end = MAX_OFFSET;
        let s = k.to_string();
        assert!(s.starts_with("logs/my%20cluster%2F%C3%BC/"), "{s}");
        assert_eq!(ChunkKey::parse(&s, "logs"), Ok(k));
    }

    #[test]
    fn rejects_keys_outside_v1() {
        let cases = [
            (
                "other/prod/t/f/0/000000000000000-000000000000001.gz",
                "prefix",
            ),
            ("checkpoints/prod/t.json", "prefix"),
            ("logs/prod/t/f/0/000000000000000-000000000000001", "no .gz"),
            (
                "logs/prod/t/f/000000000000000-000000000000001.gz",
                "missing gen",
            ),
            ("logs/prod/t/f/x/000000000000000-000000000000001.gz", "gen"),
            (
                "logs/prod/t/f/01/000000000000000-000000000000001.gz",
                "gen padding",
            ),
            ("logs/prod/t/f/0/0-1.gz", "short offsets"),
            (
                "logs/prod/t/f/0/000000000000002-000000000000001.gz",
                "reversed",
            ),
            (
                "logs/prod/t/a b/0/000000000000000-000000000000001.gz",
                "raw space",
            ),
            (
                "logs/prod/t/%41/0/000000000000000-000000000000001.gz",
                "non-canonical",
            ),
            (
                "logs/prod/t/%FF/0/000000000000000-000000000000001.gz",
                "bad utf8",
            ),
            (
                "logs/prod/t/../0/000000000000000-000000000000001.gz",
                "dot-dot",
            ),
            (
                "logs/prod/t/f/0/000000000000000-000000000000001.gz/x",
                "extra",
            ),
        ];
        for (key, why) in cases {
            assert!(ChunkKey::parse(key, "logs").is_err(), "{why}: {key}");
        }
    }

    #[test]
    fn decodes_notification_keys_in_both_forms() {
        let mut k = sample();
        k.file = "a b.log".into();
        let plain = k.to_string(); // contains %20
        let encoded = plain.replace('%', "%25");
        let c = |raw: &str| notification_key_candidates(raw, "logs");
        // Encoded, it reads as two valid keys: the caller tries both in order.
        assert_eq!(c(&encoded), [plain.clone(), encoded.clone()]);
        assert_eq!(c(&plain), std::slice::from_ref(&plain));
        assert_eq!(decode_notification_key("logs/x+y"), "logs/x y");
        // A file literally named `a%20b.log`: its key holds `a%2520b.log`,
        // which decodes to the valid key of another file, `a b.log`.
        k.file = "a%20b.log".into();
        let literal = k.to_string();
        assert!(literal.contains("a%2520b.log"), "{literal}");
        assert_eq!(c(&literal), [plain.clone(), literal.clone()]);
        assert_eq!(c(&literal.replace('%', "%25"))[0], literal);
        assert!(c("logs/not/a/key").is_empty());
    }

    #[test]
    fn checkpoint_key_encodes_components() {
        let t = TaskRef {
            cluster: "a b".into(),
            task_id: "t1".into(),
        };
        assert_eq!(t.checkpoint_key("checkpoints"), "checkpoints/a%20b/t1.json");
    }
}
