use super::*;
use crate::config::Env;
use crate::core::keys::ChunkKey;
use crate::memory::{MemorySink, MemoryStore};
use serde_json::Value;
use std::sync::atomic::Ordering;

fn shipper() -> Shipper<MemoryStore, MemoryStore, MemorySink> {
    let config = Config::from_env(&Env::from_pairs([("LOGDROP_LOG_GROUP", "g")])).unwrap();
    let mut objects = MemoryStore::default();
    objects.read_size = 1000;
    Shipper::new(
        objects,
        MemoryStore::default(),
        MemorySink::default(),
        config,
    )
}

fn key(start: u64, end: u64) -> String {
    ChunkKey {
        prefix: "logs".into(),
        cluster: "c".into(),
        task_id: "t".into(),
        file: "catalina.2026-11-24.log".into(),
        generation: 0,
        start,
        end,
    }
    .to_string()
}

fn event(keys: &[String]) -> Value {
    let records: Vec<Value> = keys
        .iter()
        .map(|k| serde_json::json!({"s3": {"bucket": {"name": "b"}, "object": {"key": k}}}))
        .collect();
    serde_json::json!({ "Records": records })
}

#[tokio::test]
async fn ships_through_the_ports_once() {
    let s = shipper();
    let now = chrono::Utc::now();
    let line = |i: i64| {
        format!(
            "{} INFO [main] event {i}\n\tat frame\n",
            crate::generate::juli_time((now - chrono::Duration::minutes(60 - i)).naive_utc())
        )
    };
    let text: String = (0..50).map(line).collect();
    let cut = text.match_indices(&line(25)).next().unwrap().0;
    let (k1, k2) = (key(0, cut as u64), key(cut as u64, text.len() as u64));
    s.objects
        .insert("b", &k1, crate::generate::gzip(&text.as_bytes()[..cut]));
    s.objects
        .insert("b", &k2, crate::generate::gzip(&text.as_bytes()[cut..]));
    let inv = Invocation {
        request_id: "r".into(),
        deadline_ms: now.timestamp_millis() + 60_000,
    };
    // Out of order, then everything again: each event lands once.
    s.handle(&event(std::slice::from_ref(&k2)), &inv)
        .await
        .unwrap();
    s.handle(&event(&[k1.clone(), k2.clone()]), &inv)
        .await
        .unwrap();
    let got = s.sender.sink.events("g", "catalina/t");
    assert_eq!(got.len(), 50);
    let mut messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
    messages.sort_by_key(|m| m.split(' ').nth(1).map(str::to_string));
    let want: Vec<String> = (0..50).map(|i| line(i).trim_end().to_string()).collect();
    assert_eq!(messages, want);
    assert_eq!(s.sender.sink.calls.load(Ordering::Relaxed), 2);
}

fn access_lines(n: i64, minutes_ago: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    (0..n)
        .map(|i| {
            let at = (t + chrono::Duration::seconds(i)).format("%d/%b/%Y:%H:%M:%S +0000");
            format!("10.0.0.1 - - [{at}] \"GET /{minutes_ago}/{i} HTTP/1.1\" 200 2\n")
        })
        .collect()
}

fn access_key(len: usize) -> String {
    ChunkKey {
        prefix: "logs".into(),
        cluster: "c".into(),
        task_id: "t".into(),
        file: "localhost_access_log.x.txt".into(),
        generation: 0,
        start: 0,
        end: len as u64,
    }
    .to_string()
}

fn soon(now: i64) -> Invocation {
    Invocation {
        request_id: "r".into(),
        deadline_ms: now + 60_000,
    }
}

#[tokio::test]
async fn events_refused_for_their_time_are_restamped_once() {
    let s = shipper();
    let now = chrono::Utc::now().timestamp_millis();
    // The group keeps less than we know: the first 30 events (2 hours old)
    // are refused (10 as expired, 20 as too old), the other 20 accepted.
    let text = access_lines(30, 120) + &access_lines(20, 10);
    let key = access_key(text.len());
    s.objects
        .insert("b", &key, crate::generate::gzip(text.as_bytes()));
    s.sender.sink.refuse(Some(crate::memory::Refusals {
        expired_before_ms: now - 7_190_000,
        too_old_before_ms: now - 3_600_000,
        too_new_after_ms: now + 7_200_000,
    }));
    let r = s
        .handle(&event(std::slice::from_ref(&key)), &soon(now))
        .await;
    let r = r.unwrap().to_json();
    assert_eq!(r["records"][0]["objects"][0]["report"]["restamped"], 30);
    let got = s.sender.sink.events("g", "localhost_access_log/t");
    let messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
    let lines: Vec<&str> = text.lines().collect();
    // Each event once: the accepted with their time, then the refused
    // ones re-stamped with the current time, in file order.
    assert_eq!(messages[..20], lines[30..]);
    assert_eq!(messages[20..], lines[..30]);
    assert!(got[..20].iter().all(|e| e.timestamp < now));
    assert!(got[20..].iter().all(|e| e.timestamp >= now));
}

#[tokio::test]
async fn refused_again_after_the_restamp_records_only_what_was_stored() {
    let s = shipper();
    let now = chrono::Utc::now().timestamp_millis();
    // Refused: 10 events of 10 minutes ago, even re-stamped with the
    // current time; accepted: 5 events half an hour ahead.
    let text = access_lines(10, 10) + &access_lines(5, -30);
    let key = access_key(text.len());
    s.objects
        .insert("b", &key, crate::generate::gzip(text.as_bytes()));
    s.sender.sink.refuse(Some(crate::memory::Refusals {
        expired_before_ms: i64::MIN,
        too_old_before_ms: now + 600_000,
        too_new_after_ms: now + 7_200_000,
    }));
    let e = s
        .handle(&event(std::slice::from_ref(&key)), &soon(now))
        .await;
    let e = e.unwrap_err();
    assert!(e.to_string().contains("rejected 10 events again"), "{e}");
    assert_eq!(e.error_type(), "Poison");
    assert_eq!(s.sender.sink.events("g", "localhost_access_log/t").len(), 5);
    // The retry, once the service accepts them, sends exactly the other 10.
    s.sender.sink.refuse(None);
    s.handle(&event(std::slice::from_ref(&key)), &soon(now))
        .await
        .unwrap();
    let got = s.sender.sink.events("g", "localhost_access_log/t");
    let mut messages: Vec<&str> = got.iter().map(|e| e.message.as_str()).collect();
    messages.sort();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(messages, lines);
}
