//! Generated Tomcat logs for tests, benchmarks and the demo: realistic volumes
//! and the edge cases real files rarely show (CRLF, invalid UTF-8, huge lines,
//! no final newline). Deterministic for a given seed.

use chrono::{Duration, NaiveDate, NaiveDateTime};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const PATHS: [&str; 6] = [
    "/app/ok.jsp?q=item",
    "/app/orders/",
    "/static/app.js?v=",
    "/app/search?term=caf%C3%A9&page=",
    "/health?probe=",
    "/app/missing/",
];
const STATUS: [u16; 6] = [200, 200, 200, 304, 404, 500];

fn month(m: u32) -> &'static str {
    MONTHS[(m as usize + 11) % 12]
}

/// Tomcat's access-log time, `24/Nov/2026:22:11:06 +0000`.
pub fn access_time(t: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        t.day(),
        month(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// JULI's time, `24-Nov-2026 22:11:06.123`.
pub fn juli_time(t: NaiveDateTime) -> String {
    use chrono::{Datelike, Timelike};
    let ms = t.and_utc().timestamp_subsec_millis();
    format!(
        "{:02}-{}-{} {:02}:{:02}:{:02}.{ms:03}",
        t.day(),
        month(t.month()),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// At least `bytes` of access log, one request every few milliseconds from `start`.
pub fn access_log(bytes: usize, seed: u64, start: NaiveDateTime) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(bytes + 256);
    let mut t = start;
    let mut i = 0u64;
    while out.len() < bytes {
        t += Duration::milliseconds(rng.i64(0..40));
        let path = PATHS[rng.usize(..PATHS.len())];
        let status = STATUS[rng.usize(..STATUS.len())];
        let line = format!(
            "10.0.{}.{} - - [{}] \"GET {path}{i} HTTP/1.1\" {status} {}\n",
            rng.u8(..),
            rng.u8(..),
            access_time(t),
            rng.u32(0..50_000)
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// At least `bytes` of JULI log: one-line events and multi-line stack traces.
pub fn juli_log(bytes: usize, seed: u64, start: NaiveDateTime) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::with_capacity(bytes + 4096);
    let mut t = start;
    let mut n = 0u64;
    while out.len() < bytes {
        t += Duration::milliseconds(rng.i64(0..500));
        n += 1;
        if rng.u8(..) < 40 {
            let head = format!(
                "{} SEVERE [http-nio-8080-exec-{}] org.apache.catalina.core.StandardWrapperValve.invoke Servlet.service() threw exception {n}\n",
                juli_time(t),
                rng.u8(1..20)
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b"\tjava.lang.IllegalStateException: order lookup failed\n");
            for f in 0..rng.usize(5..30) {
                out.extend_from_slice(
                    format!(
                        "\t\tat com.example.shop.Orders.step{f}(Orders.java:{})\n",
                        10 + f
                    )
                    .as_bytes(),
                );
            }
            out.extend_from_slice(b"\tCaused by: java.lang.NumberFormatException: For input string: \"x\"\n\t\t... 29 more\n");
        } else {
            let line = format!(
                "{} INFO [main] org.apache.catalina.startup.Catalina.start Server event {n}\n",
                juli_time(t)
            );
            out.extend_from_slice(line.as_bytes());
        }
    }
    out
}

/// Edge cases in one access log: CRLF, invalid UTF-8, blank lines, a line of
/// `huge` bytes, and no final newline.
pub fn edge_case_access_log(start: NaiveDateTime, huge: usize) -> Vec<u8> {
    let l = |s: i64, rest: &str| {
        format!(
            "10.0.0.1 - - [{}] {rest}",
            access_time(start + Duration::seconds(s))
        )
    };
    let mut out = Vec::new();
    out.extend_from_slice(format!("{}\r\n", l(0, "\"GET /crlf HTTP/1.1\" 200 1")).as_bytes());
    out.extend_from_slice(b"\n\r\n");
    out.extend_from_slice(l(1, "\"GET /bad-").as_bytes());
    out.extend_from_slice(b"\xff\xfe\xc3 HTTP/1.1\" 200 2\n");
    out.extend_from_slice(l(2, "\"GET /huge?").as_bytes());
    out.extend(std::iter::repeat_n(b'h', huge));
    out.extend_from_slice("日本語 HTTP/1.1\" 200 3\n".as_bytes());
    out.extend_from_slice(l(3, "\"GET /last HTTP/1.1\" 200 4").as_bytes());
    out
}

/// The corpus with its dates moved to `day` (same byte lengths, so the chunk
/// keys of the samples stay valid).
pub fn rebase_dates(content: &[u8], from: NaiveDate, to: NaiveDate) -> Vec<u8> {
    use chrono::Datelike;
    let pairs = [
        (
            format!("{:02}/{}/{}", from.day(), month(from.month()), from.year()),
            format!("{:02}/{}/{}", to.day(), month(to.month()), to.year()),
        ),
        (
            format!("{:02}-{}-{}", from.day(), month(from.month()), from.year()),
            format!("{:02}-{}-{}", to.day(), month(to.month()), to.year()),
        ),
    ];
    let mut text = content.to_vec();
    for (a, b) in pairs {
        text = replace_all(&text, a.as_bytes(), b.as_bytes());
    }
    text
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = memchr::memmem::find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Gzip at the default level, as the sidecar writes chunks.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_logs_split_as_expected() {
        use crate::core::split::{Format, Splitter};
        let start = NaiveDate::from_ymd_opt(2026, 11, 24)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let log = access_log(100_000, 1, start);
        let lines = log.iter().filter(|&&b| b == b'\n').count();
        let mut n = 0;
        let mut s = Splitter::new(Format::Access, 0, 1 << 20);
        s.push(&log, &mut |_| n += 1);
        s.finish(&mut |_| n += 1);
        assert_eq!(n, lines);
        assert_eq!(
            access_log(1000, 7, start),
            access_log(1000, 7, start),
            "deterministic"
        );
        let juli = juli_log(50_000, 2, start);
        let starts = juli
            .split(|&b| b == b'\n')
            .filter(|l| crate::core::timestamp::starts_with_juli_timestamp(l))
            .count();
        let mut n = 0;
        let mut s = Splitter::new(Format::Juli, 0, 1 << 20);
        s.push(&juli, &mut |_| n += 1);
        s.finish(&mut |_| n += 1);
        assert_eq!(n, starts);
    }

    #[test]
    fn rebasing_keeps_lengths() {
        let from = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        let to = NaiveDate::from_ymd_opt(2027, 1, 3).unwrap();
        let src = b"[24/Nov/2026:22:11:06 +0000] and 24-Nov-2026 22:10:58.757";
        let out = rebase_dates(src, from, to);
        assert_eq!(
            out,
            b"[03/Jan/2027:22:11:06 +0000] and 03-Jan-2027 22:10:58.757"
        );
    }
}
