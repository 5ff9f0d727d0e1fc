//! Turning source bytes into CloudWatch messages, which must be UTF-8.
//!
//! Invalid bytes become `\xNN` (so the original bytes can be read back from the
//! message); valid text passes through untouched. Oversized events are cut at
//! UTF-8 boundaries of the *source*, so every part maps to an exact source range.

/// Appends bytes already known to be valid UTF-8 (see `Piece::utf8`).
pub fn push_valid(out: &mut String, bytes: &[u8]) {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: the splitter validated these bytes in bulk as they arrived, and
    // the only change since (`message_bytes`) removes ASCII `\r` and `\n`
    // bytes, which cannot break a UTF-8 sequence.
    out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
}

/// Appends `bytes` to `out`, escaping invalid UTF-8. Returns how many bytes were escaped.
pub fn push_escaped(out: &mut String, mut bytes: &[u8]) -> usize {
    let mut escaped = 0;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return escaped;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                // `valid_up_to` guarantees `good` is UTF-8: this cannot fail.
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    push_hex_escape(out, *b);
                }
                escaped += bad;
                bytes = &rest[bad..];
            }
        }
    }
}

fn push_hex_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push_str("\\x");
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Length of `bytes` once escaped.
pub fn escaped_len(mut bytes: &[u8]) -> usize {
    let mut len = 0;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(_) => return len + bytes.len(),
            Err(e) => {
                let bad = e.error_len().unwrap_or(bytes.len() - e.valid_up_to());
                len += e.valid_up_to() + 4 * bad;
                bytes = &bytes[e.valid_up_to() + bad..];
            }
        }
    }
}

/// The longest prefix of `bytes` that ends on a character boundary (or between
/// invalid bytes) and whose escaped form is at most `limit` bytes. Never empty
/// when `bytes` is non-empty and `limit >= 4`.
pub fn cut_point(bytes: &[u8], limit: usize) -> usize {
    // Escaping at most quadruples a byte: short input fits without a look.
    if bytes.len() <= limit / 4 || escaped_len(bytes) <= limit {
        return bytes.len();
    }
    let mut used = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (step, cost) = match char_len(&bytes[i..]) {
            Some(n) => (n, n),
            None => (1, 4),
        };
        if used + cost > limit {
            break;
        }
        used += cost;
        i += step;
    }
    i
}

/// Length of the valid UTF-8 character at the start of `bytes`, if there is one.
fn char_len(bytes: &[u8]) -> Option<usize> {
    let n = match bytes.first()? {
        0x00..=0x7F => return Some(1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let candidate = bytes.get(..n)?;
    std::str::from_utf8(candidate).ok().map(|_| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(b: &[u8]) -> (String, usize) {
        let mut s = String::new();
        let n = push_escaped(&mut s, b);
        (s, n)
    }

    #[test]
    fn escapes_only_invalid_bytes() {
        assert_eq!(esc(b"plain \\x41 text"), ("plain \\x41 text".into(), 0));
        assert_eq!(esc("日本".as_bytes()), ("日本".into(), 0));
        assert_eq!(esc(b"a\xFFb\xC3"), ("a\\xFFb\\xC3".into(), 2));
        assert_eq!(esc(b"\xE6\x97x"), ("\\xE6\\x97x".into(), 2));
        assert_eq!(escaped_len(b"a\xFFb\xC3"), 10);
        assert_eq!(escaped_len("日本".as_bytes()), 6);
    }

    #[test]
    fn cuts_at_character_boundaries() {
        let s = "aé日".as_bytes(); // 1 + 2 + 3 bytes
        assert_eq!(cut_point(s, 6), 6);
        assert_eq!(cut_point(s, 5), 3);
        assert_eq!(cut_point(s, 2), 1);
        assert_eq!(cut_point(b"\xFF\xFFab", 5), 1);
        assert_eq!(cut_point(b"\xFF\xFFab", 9), 3);
    }

    #[test]
    fn parts_rejoin_to_the_source() {
        let src: Vec<u8> = "x日\u{1F600}\u{00e9}"
            .bytes()
            .chain([0xFF, b'z'])
            .cycle()
            .take(1000)
            .collect();
        let mut at = 0;
        let mut joined = String::new();
        while at < src.len() {
            let n = cut_point(&src[at..], 7);
            assert!(n > 0);
            let mut part = String::new();
            push_escaped(&mut part, &src[at..at + n]);
            assert!(part.len() <= 7);
            joined.push_str(&part);
            at += n;
        }
        assert_eq!(joined, esc(&src).0);
    }
}
