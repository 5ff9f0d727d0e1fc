//! Which ECS task this is: from the task metadata endpoint v4 (the adapter
//! for that endpoint), or from `LOGDROP_CLUSTER` / `LOGDROP_TASK_ID`.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "no task identity: set LOGDROP_CLUSTER and LOGDROP_TASK_ID, or run in ECS where ECS_CONTAINER_METADATA_URI_V4 is set"
    )]
    Unknown,
    #[error("ECS task metadata at {url}: {detail}")]
    Metadata { url: String, detail: String },
}

#[derive(Deserialize)]
struct TaskMetadata {
    #[serde(rename = "Cluster")]
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
}

/// `Cluster` may be a name or an ARN; a task id is the last segment of its ARN.
fn last_segment(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Resolves (cluster, task id); explicit values win over the metadata endpoint.
pub async fn resolve(
    cluster: Option<String>,
    task_id: Option<String>,
    metadata_uri: Option<String>,
) -> Result<(String, String), IdentityError> {
    if let (Some(c), Some(t)) = (&cluster, &task_id) {
        return Ok((c.clone(), t.clone()));
    }
    let uri = metadata_uri.ok_or(IdentityError::Unknown)?;
    let url = format!("{}/task", uri.trim_end_matches('/'));
    let meta = fetch(&url).await?;
    let c = cluster.unwrap_or_else(|| last_segment(&meta.cluster).to_string());
    let t = task_id.unwrap_or_else(|| last_segment(&meta.task_arn).to_string());
    if c.is_empty() || t.is_empty() {
        return Err(IdentityError::Metadata {
            url,
            detail: "empty Cluster or TaskARN".into(),
        });
    }
    Ok((c, t))
}

async fn fetch(url: &str) -> Result<TaskMetadata, IdentityError> {
    let mut last = String::new();
    // The agent can be slow to answer right after the task starts.
    for attempt in 0..5u32 {
        let u = url.to_string();
        let result = tokio::task::spawn_blocking(move || -> Result<TaskMetadata, String> {
            let agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(3)))
                .build()
                .new_agent();
            let body = agent
                .get(&u)
                .call()
                .map_err(|e| e.to_string())?
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())?;
            serde_json::from_str(&body).map_err(|e| format!("unexpected body: {e}"))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match result {
            Ok(m) => return Ok(m),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
    Err(IdentityError::Metadata {
        url: url.to_string(),
        detail: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn from_the_metadata_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let n = s.read(&mut req).unwrap();
            assert!(String::from_utf8_lossy(&req[..n]).starts_with("GET /v4/abc/task "));
            let body = r#"{"Cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/prod","TaskARN":"arn:aws:ecs:us-east-1:123456789012:task/prod/0f1e2d3c"}"#;
            write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        });
        let got = resolve(None, None, Some(format!("http://{addr}/v4/abc")))
            .await
            .unwrap();
        assert_eq!(got, ("prod".to_string(), "0f1e2d3c".to_string()));
    }

    #[tokio::test]
    async fn explicit_values_and_the_error() {
        assert_eq!(
            resolve(Some("c".into()), Some("t".into()), None)
                .await
                .unwrap(),
            ("c".into(), "t".into())
        );
        let e = resolve(Some("c".into()), None, None).await.unwrap_err();
        assert!(e.to_string().contains("LOGDROP_TASK_ID"));
    }
}
