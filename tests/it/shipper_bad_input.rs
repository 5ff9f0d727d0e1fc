//! Each kind of bad input has a defined result, and nothing that exists is lost.

use crate::rig::*;
use logdrop::core::keys::ChunkKey;

#[tokio::test]
async fn keys_outside_layout_are_skipped_not_retried() {
    let rig = Rig::new("bad-keys").await;
    let keys = [
        "logs/not/a/chunk.gz".to_string(),
        "checkpoints/c/t.json".to_string(),
        "elsewhere/x.gz".to_string(),
    ];
    let r = rig
        .shipper()
        .handle(&rig.s3_event(&keys), &inv("bad"))
        .await
        .expect("records succeed")
        .to_json();
    for i in 0..3 {
        assert_eq!(r["records"][i]["ok"], true);
        assert_eq!(r["records"][i]["objects"][0]["result"], "skipped", "{i}");
    }
}

#[tokio::test]
async fn truncated_gzip_ships_what_came_before_and_fails_naming_key_and_offset() {
    let rig = Rig::new("truncated").await;
    let file = "localhost_access_log.2026-11-24.txt";
    let content = logdrop::generate::access_log(4 << 20, 3, hours_ago(4));
    let key = rig.key(file, 0, content.len() as u64).to_string();
    let gz = logdrop::generate::gzip(&content);
    rig.put_raw(&key, gz[..gz.len() / 2].to_vec()).await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let err = rig
        .shipper()
        .handle(&event, &inv("t1"))
        .await
        .expect_err("fails");
    let msg = err.to_string();
    assert!(msg.contains(&key) && msg.contains("source offset"), "{msg}");
    assert_eq!(err.error_type(), "Poison");
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let want = expected_events(file, &content);
    assert!(got.len() > 1000 && got.len() < want.len(), "{}", got.len());
    // What arrived is exactly the first events of the file, in order.
    let mut file_order = expected_events_in_file_order(&content);
    file_order.truncate(got.len());
    file_order.sort_by_key(|e| e.0);
    assert!(got == file_order);
    let shipped = rig.checkpoint().await.files[file]["0"].shipped.clone();
    assert_eq!(shipped.ranges().len(), 1);
    // A second delivery of the same broken object adds nothing and fails again:
    // the trigger's retry limit then moves it to the dead-letter queue.
    rig.shipper()
        .handle(&event, &inv("t2"))
        .await
        .expect_err("still fails");
    assert_eq!(
        rig.events(&rig.stream("localhost_access_log")).await.len(),
        got.len()
    );
    // The sidecar's re-upload of the right bytes completes it exactly.
    rig.put_raw(&key, gz).await;
    rig.shipper()
        .handle(&event, &inv("t3"))
        .await
        .expect("complete now");
    assert!(rig.events(&rig.stream("localhost_access_log")).await == want);
}

fn expected_events_in_file_order(content: &[u8]) -> Vec<(i64, String)> {
    content
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let line = String::from_utf8(l.to_vec()).unwrap();
            let (a, b) = (line.find('[').unwrap(), line.find(']').unwrap());
            (
                chrono::DateTime::parse_from_str(&line[a + 1..b], "%d/%b/%Y:%H:%M:%S %z")
                    .unwrap()
                    .timestamp_millis(),
                line,
            )
        })
        .collect()
}

#[tokio::test]
async fn garbage_body_and_wrong_length_are_poison() {
    let rig = Rig::new("garbage").await;
    let k1 = rig.key("catalina.x.log", 0, 10).to_string();
    rig.put_raw(&k1, b"this is not gzip at all".to_vec()).await;
    let k2 = rig.key("catalina.y.log", 0, 10).to_string();
    rig.put_raw(&k2, logdrop::generate::gzip(b"only nine"))
        .await;
    for k in [k1, k2] {
        let err = rig
            .shipper()
            .handle(&rig.s3_event(std::slice::from_ref(&k)), &inv("g"))
            .await
            .expect_err("poison");
        assert!(err.to_string().contains(&k), "{err}");
        assert_eq!(err.error_type(), "Poison");
    }
}

#[tokio::test]
async fn edge_cases_arrive_losslessly() {
    let rig = Rig::new("edges").await;
    let file = "localhost_access_log.edge.txt";
    let huge = 5 << 20;
    let content = logdrop::generate::edge_case_access_log(hours_ago(1), huge);
    let key = rig.upload_chunk(file, &content, 0, content.len()).await;
    let r = rig
        .shipper()
        .handle(&rig.s3_event(&[key]), &inv("e"))
        .await
        .expect("ok")
        .to_json();
    let report = &r["records"][0]["objects"][0]["report"];
    assert_eq!(report["events"], 4);
    assert_eq!(report["escaped_bytes"], 3);
    let got = rig.events(&rig.stream("localhost_access_log")).await;
    let messages: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
    assert!(
        messages[0].ends_with("\"GET /crlf HTTP/1.1\" 200 1"),
        "CR dropped: {:?}",
        messages[0]
    );
    assert!(
        messages[1].ends_with("\"GET /bad-\\xFF\\xFE\\xC3 HTTP/1.1\" 200 2"),
        "{}",
        messages[1]
    );
    assert!(
        messages
            .last()
            .unwrap()
            .ends_with("\"GET /last HTTP/1.1\" 200 4"),
        "no final newline"
    );
    // The 5 MiB line arrives in parts that rejoin to the line, in order.
    let parts = &messages[2..messages.len() - 1];
    assert_eq!(parts.len(), huge.div_ceil(1_048_550));
    assert!(parts.iter().all(|p| p.len() <= 1_048_550));
    let joined: String = parts.concat();
    let line = content.split(|&b| b == b'\n').nth(4).unwrap();
    assert!(joined.as_bytes() == line, "the parts rejoin to the line");
    assert!(
        got.iter()
            .skip(2)
            .take(parts.len())
            .all(|e| e.0 == got[2].0),
        "parts share the event's timestamp"
    );
}

#[tokio::test]
async fn empty_object_and_empty_range() {
    let rig = Rig::new("empty").await;
    let k1 = rig.upload_chunk("catalina.e.log", b"", 0, 0).await;
    let k2 = rig.key("catalina.f.log", 5, 5).to_string();
    rig.put_raw(&k2, Vec::new()).await;
    let k3 = rig.upload_chunk("catalina.g.log", b"\n\n\r\n", 0, 4).await;
    let r = rig
        .shipper()
        .handle(&rig.s3_event(&[k1, k2, k3]), &inv("empty"))
        .await
        .expect("ok")
        .to_json();
    assert_eq!(
        r["records"][0]["objects"][0]["result"], "already_shipped",
        "an empty range has nothing to ship"
    );
    assert_eq!(r["records"][2]["objects"][0]["result"], "shipped");
    assert_eq!(r["records"][2]["objects"][0]["report"]["sent"], 0);
}

#[tokio::test]
async fn missing_object_or_bucket_is_a_warning_not_a_loss() {
    let rig = Rig::new("missing").await;
    let key = rig.key("catalina.gone.log", 0, 10).to_string();
    let r = rig
        .shipper()
        .handle(&rig.s3_event(std::slice::from_ref(&key)), &inv("m"))
        .await
        .expect("ok")
        .to_json();
    assert_eq!(r["records"][0]["objects"][0]["result"], "missing");
    // Not marked shipped: if the object appears again, it is shipped then.
    assert!(
        !rig.checkpoint()
            .await
            .is_shipped(&ChunkKey::parse(&key, "logs").unwrap())
    );
    // A bucket that does not exist: the checkpoint cannot be kept there, so the record fails (retryable).
    let mut event = rig.s3_event(&[key]);
    event["Records"][0]["s3"]["bucket"]["name"] = "no-such-bucket-anywhere".into();
    let err = rig
        .shipper()
        .handle(&event, &inv("nb"))
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("no-such-bucket-anywhere"), "{err}");
}

#[tokio::test]
async fn missing_log_group_with_creation_disabled_fails_and_keeps_the_data() {
    let rig = Rig::new("nogroup").await;
    let content = b"24-Nov-2026 22:10:58.757 INFO [main] x\n".to_vec();
    let key = rig
        .upload_chunk("catalina.n.log", &content, 0, content.len())
        .await;
    let event = rig.s3_event(std::slice::from_ref(&key));
    let err = rig
        .shipper_with(&[("LOGDROP_CREATE_LOG_GROUP", "false")])
        .handle(&event, &inv("ng"))
        .await
        .expect_err("fails");
    assert!(
        err.to_string().contains("LOGDROP_CREATE_LOG_GROUP"),
        "{err}"
    );
    assert_eq!(err.error_type(), "Poison");
    let cp = rig.checkpoint().await;
    assert!(
        cp.files["catalina.n.log"]["0"].shipped.is_empty()
            && cp.files["catalina.n.log"]["0"].leases.is_empty()
    );
    // Once the group exists, the retry ships it.
    rig.shipper().handle(&event, &inv("ng2")).await.expect("ok");
    assert_eq!(rig.events(&rig.stream("catalina")).await.len(), 1);
}
