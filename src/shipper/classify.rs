//! Stage 1, pure: what a notification's key names. A v1 chunk (the public
//! drop format, which any producer may write), a v2 task segment (what the
//! sidecar writes), or something to skip with a reason.

use crate::core::keys::{ChunkKey, decode_notification_key, notification_key_candidates};
use crate::core::segment::SegmentKey;
use crate::shipper::Config;

/// What a notification's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    Skip {
        key: String,
        reason: String,
    },
    /// A chunk, under one or (when the notification's encoding is ambiguous)
    /// two stored keys, most likely first.
    Chunk(Vec<(String, ChunkKey)>),
    /// A layout v2 task segment, under its stored key.
    Segment(String, SegmentKey),
}

pub fn classify(raw_key: &str, config: &Config) -> Classified {
    let decoded = decode_notification_key(raw_key);
    if decoded.starts_with(&format!("{}/", config.checkpoint_prefix)) {
        return Classified::Skip {
            key: decoded,
            reason: "checkpoint object: checkpoints must not trigger the shipper".into(),
        };
    }
    // A segment key never parses as a v1 key (four components, not five).
    for k in [decoded.clone(), raw_key.to_string()] {
        if let Ok(seg) = SegmentKey::parse(&k, &config.key_prefix) {
            return Classified::Segment(k, seg);
        }
    }
    let candidates: Vec<(String, ChunkKey)> =
        notification_key_candidates(raw_key, &config.key_prefix)
            .into_iter()
            .filter_map(|k| Some((k.clone(), ChunkKey::parse(&k, &config.key_prefix).ok()?)))
            .collect();
    if candidates.is_empty() {
        let reason = match ChunkKey::parse(&decoded, &config.key_prefix) {
            Err(e) => format!("neither a layout v1 chunk nor a v2 segment key: {e}"),
            Ok(_) => "neither a layout v1 chunk nor a v2 segment key".into(),
        };
        return Classified::Skip {
            key: decoded,
            reason,
        };
    }
    Classified::Chunk(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    #[test]
    fn classifies_keys() {
        let c = Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap();
        assert!(matches!(
            classify("checkpoints/c/t.json", &c),
            Classified::Skip { .. }
        ));
        assert!(matches!(classify("logs/x.gz", &c), Classified::Skip { .. }));
        let k = "logs/c/t/f.log/0/000000000000010-000000000000100.gz";
        let key = ChunkKey::parse(k, "logs").unwrap();
        assert_eq!(
            classify(k, &c),
            Classified::Chunk(vec![(k.to_string(), key)])
        );
        let s = "logs/c/t/segment/000000000000007.gz";
        let seg = SegmentKey::parse(s, "logs").unwrap();
        assert_eq!(classify(s, &c), Classified::Segment(s.to_string(), seg));
    }
}
