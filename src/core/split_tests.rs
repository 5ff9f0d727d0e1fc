use super::*;
use proptest::prelude::*;

type Out = Vec<((u64, u64), Vec<u8>, bool)>;

fn split_in_chunks(format: Format, data: &[u8], limit: usize, chunks: &[usize]) -> Out {
    let mut s = Splitter::new(format, 1000, limit);
    let mut out = Out::new();
    let mut emit = |p: Piece<'_>| out.push((p.range, p.raw.to_vec(), p.first));
    let mut at = 0;
    for &c in chunks.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let n = c.max(1).min(data.len() - at);
        s.push(&data[at..at + n], &mut emit);
        at += n;
    }
    s.finish(&mut emit);
    out
}

fn split(format: Format, data: &[u8]) -> Out {
    split_in_chunks(format, data, 1 << 20, &[data.len().max(1)])
}

fn messages(out: &Out) -> Vec<String> {
    out.iter()
        .map(|(_, raw, _)| String::from_utf8_lossy(&message_bytes(raw, true, true)).into_owned())
        .collect()
}

fn corpus(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../shared/corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn formats_by_file_name() {
    assert_eq!(
        Format::for_file("localhost_access_log.2026-11-24.txt"),
        Format::Access
    );
    for juli in [
        "catalina.2026-11-24.log",
        "localhost.2026-11-24.log",
        "manager.x.log",
        "host-manager.x.log",
    ] {
        assert_eq!(Format::for_file(juli), Format::Juli, "{juli}");
    }
    assert_eq!(Format::for_file("catalina.out"), Format::Juli);
    assert_eq!(Format::for_file("gc.log"), Format::Lines);
}

#[test]
fn corpus_event_counts_match_the_corpus_readme() {
    let cases = [
        ("localhost_access_log.2026-11-24.txt", Format::Access, 2000),
        ("catalina.2026-11-24.log", Format::Juli, 40),
        ("localhost.2026-11-24.log", Format::Juli, 27),
    ];
    for (name, format, events) in cases {
        let data = corpus(name);
        let out = split(format, &data);
        assert_eq!(out.len(), events, "{name}");
        // Every event starts with a timestamp line and the ranges tile the file.
        let mut at = 1000;
        for (range, raw, first) in &out {
            assert!(*first);
            assert_eq!(range.0, at);
            at = range.1;
            if format == Format::Juli {
                assert!(
                    starts_with_juli_timestamp(raw),
                    "{}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
        assert_eq!(at, 1000 + data.len() as u64);
        // The messages joined back with the removed line ends are the file.
        let joined: String = messages(&out).iter().map(|m| format!("{m}\n")).collect();
        assert_eq!(joined.as_bytes(), &data[..], "{name}");
    }
}

#[test]
fn stack_traces_stay_whole() {
    let out = split(Format::Juli, &corpus("localhost.2026-11-24.log"));
    let msgs = messages(&out);
    let trace = msgs
        .iter()
        .find(|m| m.contains("Stacktrace:] with root cause"))
        .unwrap();
    assert!(trace.contains("\n1: <%@ page"));
    assert!(
        trace.contains("\n\n\nStacktrace:]"),
        "blank lines inside stay"
    );
    assert!(trace.ends_with("at java.base/java.lang.Thread.run(Thread.java:840)"));
    assert!(
        msgs.iter()
            .any(|m| m.contains("\n\tCaused by:") || m.contains("\nCaused by:"))
    );
}

#[test]
fn line_end_rules() {
    let data = b"a 1\r\n\r\nb 2\n\n\nc 3";
    assert_eq!(
        messages(&split(Format::Access, data)),
        ["a 1", "b 2", "c 3"]
    );
    let juli = b"24-Nov-2026 22:10:58.757 INFO x\r\n\tat y\r\n\r\n24-Nov-2026 22:10:58.758 INFO z";
    assert_eq!(
        messages(&split(Format::Juli, juli)),
        [
            "24-Nov-2026 22:10:58.757 INFO x\n\tat y",
            "24-Nov-2026 22:10:58.758 INFO z"
        ]
    );
    let lines = b"\n\n  orphan\nstart\n  more\n\tmore\nnext\n";
    assert_eq!(
        messages(&split(Format::Lines, lines)),
        ["  orphan", "start\n  more\n\tmore", "next"]
    );
    let orphan = b"\tat x\n\tat y\n24-Nov-2026 22:10:58.757 INFO z\n";
    assert_eq!(
        messages(&split(Format::Juli, orphan)),
        ["\tat x\n\tat y", "24-Nov-2026 22:10:58.757 INFO z"]
    );
    assert!(split(Format::Access, b"").is_empty());
    assert!(split(Format::Access, b"\n\r\n\n").is_empty());
}

#[test]
fn oversized_events_become_parts_with_exact_ranges() {
    let mut data = b"small\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 2500));
    data.extend_from_slice(b"\nafter\n");
    let out = split_in_chunks(Format::Access, &data, 1000, &[7, 300]);
    let lens: Vec<usize> = out.iter().map(|(_, raw, _)| raw.len()).collect();
    assert_eq!(lens, [6, 1000, 1000, 501, 6]);
    let firsts: Vec<bool> = out.iter().map(|p| p.2).collect();
    assert_eq!(firsts, [true, true, false, false, true]);
    assert_eq!(out[2].0, (1000 + 6 + 1000, 1000 + 6 + 2000));
}

#[test]
fn memory_stays_bounded_on_one_huge_line() {
    let mut s = Splitter::new(Format::Lines, 0, 1000);
    let mut parts = 0;
    for _ in 0..5000 {
        s.push(&[b'y'; 1024], &mut |_| parts += 1);
        assert!(s.pending_bytes() < 2048, "{}", s.pending_bytes());
    }
    s.finish(&mut |_| parts += 1);
    assert_eq!(parts, (5000 * 1024usize).div_ceil(1000));
}

/// The messages of each event, its parts joined, as `EventBuilder` writes them.
fn rejoined(format: Format, data: &[u8], limit: usize, chunks: &[usize]) -> Vec<Vec<u8>> {
    let mut s = Splitter::new(format, 0, limit);
    let mut events: Vec<Vec<u8>> = Vec::new();
    let mut emit = |p: Piece<'_>| {
        let m = message_bytes(p.raw, p.multiline, p.last);
        match events.last_mut() {
            Some(e) if !p.first => e.extend_from_slice(&m),
            _ => events.push(m.to_vec()),
        }
    };
    let mut at = 0;
    for &c in chunks.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let n = c.max(1).min(data.len() - at);
        s.push(&data[at..at + n], &mut emit);
        at += n;
    }
    s.finish(&mut emit);
    events.retain(|e| !e.is_empty());
    events
}

#[test]
fn parts_of_a_multiline_event_rejoin_exactly() {
    let mut event = b"24-Nov-2026 22:10:58.757 SEVERE [main] boom\r\n".to_vec();
    for i in 0..40 {
        event.extend_from_slice(format!("\tat frame.number{i}(Foo.java:{i})\r\n").as_bytes());
        if i % 7 == 0 {
            event.extend_from_slice(b"\r\n\n");
        }
    }
    // A run of blank lines longer than a part, inside the event.
    event.extend_from_slice(&b"\n".repeat(200));
    event.extend_from_slice(b"\tat the.end(Foo.java:1)\r\n\r\n\n");
    let mut data = event.clone();
    data.extend_from_slice(b"24-Nov-2026 22:10:58.758 INFO [main] next\n");
    let whole = rejoined(Format::Juli, &data, 1 << 20, &[data.len()]);
    assert_eq!(whole.len(), 2);
    for limit in [16, 37, 64, 100] {
        for chunks in [&[data.len()][..], &[1], &[3, 17, 5]] {
            let parts = rejoined(Format::Juli, &data, limit, chunks);
            assert!(parts == whole, "limit {limit}, chunks {chunks:?}");
        }
    }
    let mut s = Splitter::new(Format::Juli, 0, 64);
    let mut blank_parts = 0;
    s.push(&data, &mut |p| {
        blank_parts += usize::from(p.raw.iter().all(|&b| b == b'\n'))
    });
    assert!(
        blank_parts >= 2,
        "the blank run is cut into parts, each kept"
    );
}

/// Whether `data` holds `n` line-end bytes in a row (a blank run that long
/// may end its event after a part of only line ends was sent: see `part_end`).
fn has_line_end_run(data: &[u8], n: usize) -> bool {
    data.split(|&b| b != b'\n' && b != b'\r')
        .any(|run| run.len() >= n)
}

fn arb_log() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"24-Nov-2026 22:10:58.757 INFO [main] started".to_vec()),
        Just(b"\tat org.apache.Foo.bar(Foo.java:1)".to_vec()),
        Just(b"1.2.3.4 - - [24/Nov/2026:10:00:00 +0900] \"GET /\" 200 6".to_vec()),
        Just(Vec::new()),
        Just(b"\r".to_vec()),
        Just("caf\u{e9} \u{65e5}\u{672c}".as_bytes().to_vec()),
        Just(b"bad \xff\xfe bytes".to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        Just(vec![b'z'; 130]),
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join(&b'\n'))
}

proptest! {
    #[test]
    fn chunking_never_changes_the_pieces(
        data in arb_log(),
        chunks in prop::collection::vec(1usize..50, 1..6),
        format in prop_oneof![Just(Format::Access), Just(Format::Juli), Just(Format::Lines)],
        limit in prop_oneof![Just(16usize), Just(64), Just(4096)],
    ) {
        let whole = split_in_chunks(format, &data, limit, &[data.len().max(1)]);
        let chunked = split_in_chunks(format, &data, limit, &chunks);
        prop_assert_eq!(&whole, &chunked);
        let mut at = 1000;
        let mut s = Splitter::new(format, 1000, limit);
        let mut flagged_ok = true;
        let mut check = |p: Piece<'_>| flagged_ok &= !p.utf8 || std::str::from_utf8(p.raw).is_ok();
        for c in data.chunks(chunks[0]) {
            s.push(c, &mut check);
        }
        s.finish(&mut check);
        prop_assert!(flagged_ok, "a piece flagged valid UTF-8 is not");
        if !has_line_end_run(&data, limit) {
            let events = rejoined(format, &data, 1 << 20, &[data.len().max(1)]);
            prop_assert_eq!(rejoined(format, &data, limit, &chunks), events);
        }
        for (range, raw, _) in &whole {
            prop_assert!(range.0 >= at && range.1 > range.0);
            prop_assert_eq!(&data[(range.1 - 1000) as usize - raw.len()..(range.1 - 1000) as usize], &raw[..]);
            prop_assert!(crate::core::escape::escaped_len(raw) <= limit);
            at = range.1;
        }
    }
}
