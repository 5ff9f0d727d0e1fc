//! The three shapes a shipper invocation arrives in, read into one list of
//! records. Parsing is tolerant: emulators and older configurations omit
//! fields (`userIdentity`, `sequencer`, ...) that are of no use here anyway.

use aws_lambda_events::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// S3 event notification invoking the function directly.
    S3,
    /// SQS messages whose bodies are S3 notifications (or SNS envelopes of them).
    Sqs,
    /// EventBridge "Object Created".
    EventBridge,
}

/// An object named by a notification, key as delivered (still encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub raw_key: String,
}

/// The unit that succeeds or fails as a whole: an SQS message, or an S3/EventBridge record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The SQS message id (for partial batch failures); an index otherwise.
    pub id: String,
    /// The objects, or why the record could not be read (a poison message).
    pub objects: Result<Vec<ObjectRef>, RecordError>,
}

/// Why one record (an SQS message, an S3 or EventBridge record) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("message has no body")]
    NoBody,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("SNS envelope without Message")]
    SnsWithoutMessage,
    #[error("body is not an S3 notification: {0}")]
    NotS3Notification(String),
    #[error("S3 notification without Records")]
    NoRecords,
    #[error("S3 record: {0}")]
    S3Record(String),
    #[error("EventBridge detail: {0}")]
    EventBridgeDetail(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub records: Vec<Record>,
}

/// The event as a whole has none of the three shapes.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error(
        "the event is not an S3 notification, an SQS batch or an EventBridge Object Created event: no `Records` and no `detail-type`"
    )]
    Unknown,
    #[error("the event looks like an SQS batch but does not parse: {0}")]
    Sqs(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: Keyed,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct Keyed {
    key: String,
}

#[derive(Deserialize)]
struct EventBridgeDetail {
    bucket: Named,
    object: Keyed,
}

pub fn parse(event: &Value) -> Result<Trigger, TriggerError> {
    if event.get("detail-type").is_some() {
        return parse_eventbridge(event);
    }
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .ok_or(TriggerError::Unknown)?;
    let from_sqs = records
        .first()
        .and_then(|r| r.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs");
    if from_sqs {
        let sqs: SqsEvent = serde_json::from_value(event.clone()).map_err(TriggerError::Sqs)?;
        let records = sqs
            .records
            .into_iter()
            .enumerate()
            .map(|(i, m)| Record {
                id: m.message_id.unwrap_or_else(|| i.to_string()),
                objects: m
                    .body
                    .as_deref()
                    .ok_or(RecordError::NoBody)
                    .and_then(objects_in_body),
            })
            .collect();
        return Ok(Trigger {
            kind: TriggerKind::Sqs,
            records,
        });
    }
    let records = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            id: i.to_string(),
            objects: s3_record(r.clone()).map(|o| o.into_iter().collect()),
        })
        .collect();
    Ok(Trigger {
        kind: TriggerKind::S3,
        records,
    })
}

fn parse_eventbridge(event: &Value) -> Result<Trigger, TriggerError> {
    let detail_type = event
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string();
    Ok(Trigger {
        kind: TriggerKind::EventBridge,
        records: vec![Record {
            id,
            objects: eventbridge_objects(detail_type, event),
        }],
    })
}

/// The object of an EventBridge event, whether it invoked the function or an
/// EventBridge rule put it on the queue (the template's EventBridge trigger).
fn eventbridge_objects(detail_type: &str, event: &Value) -> Result<Vec<ObjectRef>, RecordError> {
    if detail_type != "Object Created" {
        tracing::warn!(
            detail_type,
            "ignoring an EventBridge event that is not Object Created"
        );
        return Ok(Vec::new());
    }
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    serde_json::from_value::<EventBridgeDetail>(detail)
        .map(|d| {
            vec![ObjectRef {
                bucket: d.bucket.name,
                raw_key: d.object.key,
            }]
        })
        .map_err(|e| RecordError::EventBridgeDetail(e.to_string()))
}

/// The objects in an SQS body: an S3 notification, S3's `s3:TestEvent`, an
/// EventBridge event (a rule targeting the queue), or an SNS envelope around
/// an S3 notification.
fn objects_in_body(body: &str) -> Result<Vec<ObjectRef>, RecordError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| RecordError::NotJson(e.to_string()))?;
    if let Some(detail_type) = value.get("detail-type").and_then(Value::as_str) {
        return eventbridge_objects(detail_type, &value);
    }
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let inner = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or(RecordError::SnsWithoutMessage)?;
        return objects_in_body(inner);
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let n: S3Notification =
        serde_json::from_value(value).map_err(|e| RecordError::NotS3Notification(e.to_string()))?;
    if n.records.is_empty() {
        return Err(RecordError::NoRecords);
    }
    Ok(n.records.into_iter().filter_map(created).collect())
}

fn s3_record(r: Value) -> Result<Option<ObjectRef>, RecordError> {
    serde_json::from_value::<S3Record>(r)
        .map(created)
        .map_err(|e| RecordError::S3Record(e.to_string()))
}

/// Only object-created records carry new log data; others are logged and ignored.
fn created(r: S3Record) -> Option<ObjectRef> {
    match r.event_name.as_deref() {
        Some(name) if !name.starts_with("ObjectCreated") => {
            tracing::warn!(
                event_name = name,
                key = r.s3.object.key,
                "ignoring an S3 record that is not ObjectCreated"
            );
            None
        }
        _ => Some(ObjectRef {
            bucket: r.s3.bucket.name,
            raw_key: r.s3.object.key,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn sample_events_parse() {
        let s3 = parse(&fixture("s3-put.json")).unwrap();
        assert_eq!(s3.kind, TriggerKind::S3);
        assert_eq!(s3.records.len(), 1);
        let sqs = parse(&fixture("sqs-batch.json")).unwrap();
        assert_eq!(sqs.kind, TriggerKind::Sqs);
        assert!(sqs.records.iter().all(|r| r.objects.is_ok()));
        let eb = parse(&fixture("eventbridge-object-created.json")).unwrap();
        assert_eq!(eb.kind, TriggerKind::EventBridge);
        assert_eq!(eb.records[0].objects.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn tolerates_minimal_records_and_test_events() {
        let minimal = serde_json::json!({"Records": [
            {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "logs/a+b"}}},
            {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": "b"}, "object": {"key": "logs/x"}}}
        ]});
        let t = parse(&minimal).unwrap();
        assert_eq!(
            t.records[0].objects,
            Ok(vec![ObjectRef {
                bucket: "b".into(),
                raw_key: "logs/a+b".into()
            }])
        );
        assert_eq!(t.records[1].objects, Ok(vec![]));
        let sqs = serde_json::json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": "{\"Service\":\"Amazon S3\",\"Event\":\"s3:TestEvent\"}"},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": "not json"},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": serde_json::json!({"Type": "Notification", "Message": minimal.to_string()}).to_string()}
        ]});
        let t = parse(&sqs).unwrap();
        assert_eq!(t.records[0].objects, Ok(vec![]));
        assert!(matches!(t.records[1].objects, Err(RecordError::NotJson(_))));
        assert_eq!(t.records[2].objects.as_ref().unwrap().len(), 1);
        assert!(parse(&serde_json::json!({"hello": 1})).is_err());
    }

    #[test]
    fn eventbridge_event_inside_an_sqs_body() {
        let eb = fixture("eventbridge-object-created.json");
        let other = serde_json::json!({"detail-type": "Object Deleted", "detail": {}});
        let broken = serde_json::json!({"detail-type": "Object Created", "detail": {"bucket": {}}});
        let sqs = serde_json::json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": eb.to_string()},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": other.to_string()},
            {"eventSource": "aws:sqs", "messageId": "m3", "body": broken.to_string()}
        ]});
        let t = parse(&sqs).unwrap();
        assert_eq!(t.kind, TriggerKind::Sqs);
        assert_eq!(
            t.records[0].objects,
            Ok(vec![ObjectRef {
                bucket: "logdrop-demo".into(),
                raw_key: eb["detail"]["object"]["key"].as_str().unwrap().into(),
            }])
        );
        assert_eq!(t.records[1].objects, Ok(vec![]));
        assert!(matches!(
            t.records[2].objects,
            Err(RecordError::EventBridgeDetail(_))
        ));
    }
}
