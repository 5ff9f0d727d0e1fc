//! A fault-injecting HTTP proxy in front of the emulator, for S3 and
//! CloudWatch Logs alike: point a client's endpoint at `FaultProxy::endpoint`
//! and a rule decides, per request, whether it passes or fails and how. The
//! rule sees the request (operation, path, body) and its number among the
//! requests of that operation, so schedules are deterministic: by count, or
//! seeded. Every injected fault is logged with the request body, so a test can
//! count exactly what a fault may have stored.
//!
//! One request per connection (every answer says `Connection: close`), which
//! keeps the framing simple and makes "reset" mean one request.

mod http;

use http::{answer, find, forward, header, read_request, reset};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    Pass,
    /// Answered by the proxy with a 500, never forwarded: surely not done.
    ServerError,
    /// Answered by the proxy as throttled (CloudWatch Logs: 400
    /// ThrottlingException; S3: 503 SlowDown), never forwarded.
    Throttle,
    /// The connection is reset before the request reaches the emulator.
    ResetBefore,
    /// The emulator handles the request; the connection is reset instead of
    /// the answer: done, but the client cannot know.
    ResetAfter,
    /// The emulator handles the request; the answer is cut mid-body.
    CutBody,
    /// Never answered; the connection stays open until the client gives up.
    Stall,
    /// Answered by the proxy with a 400 the client must not retry, never forwarded.
    BadRequest,
    /// Answered `200 {}` by the proxy, never forwarded: a stand-in CloudWatch
    /// Logs that stores nothing, for volumes the emulator cannot take.
    Accept,
    /// The emulator handles the request; the answer is held back until the
    /// client goes away (a test kills it meanwhile: a crash after a put).
    Hold,
}

impl Fault {
    /// Whether the emulator carried the request out.
    pub fn handled(self) -> bool {
        matches!(
            self,
            Fault::Pass | Fault::ResetAfter | Fault::CutBody | Fault::Hold
        )
    }

    /// Whether the client cannot tell if the request was carried out.
    pub fn ambiguous(self) -> bool {
        matches!(
            self,
            Fault::ResetBefore | Fault::ResetAfter | Fault::CutBody | Fault::Stall | Fault::Hold
        )
    }
}

/// What a rule sees of a request.
pub struct Request<'a> {
    pub method: &'a str,
    /// For rules that pick objects by key (the sidecar's uploads).
    #[allow(dead_code)]
    pub path: &'a str,
    /// `X-Amz-Target` (CloudWatch Logs), e.g. `Logs_20140328.PutLogEvents`.
    pub target: Option<&'a str>,
    pub body: &'a [u8],
}

impl Request<'_> {
    /// `logs:PutLogEvents`, `s3:GET`, `s3:PUT`, ...
    pub fn op(&self) -> String {
        match self.target {
            Some(t) => format!("logs:{}", t.rsplit('.').next().unwrap_or(t)),
            None => format!("s3:{}", self.method),
        }
    }
}

/// Decides the fault for a request; `n` is its 1-based number among the
/// requests of the same operation.
pub type Rule = Box<dyn Fn(&Request<'_>, u64) -> Fault + Send + Sync>;

#[derive(Debug, Clone)]
pub struct Injected {
    pub op: String,
    pub path: String,
    pub fault: Fault,
    pub body: Vec<u8>,
}

/// Which `GetLogEvents` answers leave out the events of puts the emulator
/// stored but whose answer was lost: a service slow to show what it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hide {
    /// Every read shows everything.
    #[default]
    Nothing,
    /// The next `n` reads hide them.
    Reads(u64),
    /// Every read hides them until told otherwise (`hide(Hide::Nothing)`).
    UntilTold,
}

#[derive(Default)]
struct Shared {
    counts: HashMap<String, u64>,
    injected: Vec<Injected>,
    hide: Hide,
    /// Reads answered with events hidden.
    hidden_reads: u64,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A seeded schedule: each request of an operation that `ops` names fails
/// with probability `share` (0..=1), the fault drawn from `faults`; the same
/// seed gives the same faults to the same (operation, number).
pub fn seeded(seed: u64, share: f64, ops: &'static [&'static str], faults: Vec<Fault>) -> Rule {
    Box::new(move |req, n| {
        let op = req.op();
        if !ops.contains(&op.as_str()) || faults.is_empty() {
            return Fault::Pass;
        }
        let h = op.bytes().fold(seed, |h, b| {
            h.rotate_left(5) ^ u64::from(b).wrapping_mul(0x9E37_79B9)
        });
        let mut rng = fastrand::Rng::with_seed(h ^ n.wrapping_mul(0x1000_0001));
        if rng.f64() < share {
            faults[rng.usize(..faults.len())]
        } else {
            Fault::Pass
        }
    })
}

impl FaultProxy {
    pub async fn start(upstream: &str, rule: Rule) -> FaultProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let rule = Arc::new(rule);
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (s, rule, upstream) = (s.clone(), rule.clone(), upstream.clone());
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, &rule, &s).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            shared,
            task,
        }
    }

    pub fn injected(&self) -> Vec<Injected> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .injected
            .clone()
    }

    /// From now on, reads hide the events of puts stored without an answer.
    pub fn hide(&self, hide: Hide) {
        self.shared.lock().unwrap_or_else(|p| p.into_inner()).hide = hide;
    }

    /// Reads answered with events hidden so far.
    pub fn hidden_reads(&self) -> u64 {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.hidden_reads
    }

    /// Whether a request was answered with `fault` (for waiting on a hold).
    pub fn saw(&self, fault: Fault) -> bool {
        self.injected().iter().any(|i| i.fault == fault)
    }

    /// Requests seen per operation.
    pub fn requests(&self, op: &str) -> u64 {
        let s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.counts.get(op).copied().unwrap_or(0)
    }

    /// SDK configuration whose clients go through this proxy.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        let base = crate::moto::moto().sdk_config();
        base.into_builder().endpoint_url(&self.endpoint).build()
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    rule: &Rule,
    shared: &Mutex<Shared>,
) -> std::io::Result<()> {
    let Some(raw) = read_request(&mut client).await? else {
        return Ok(());
    };
    let head_end = find(&raw.bytes, b"\r\n\r\n").map_or(raw.bytes.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw.bytes[..head_end]).to_string();
    let mut first = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let target = header(&head, "x-amz-target");
    let req = Request {
        method,
        path,
        target: target.as_deref(),
        body: &raw.bytes[head_end..],
    };
    let op = req.op();
    let n = {
        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
        let c = s.counts.entry(op.clone()).or_default();
        *c += 1;
        *c
    };
    let fault = rule(&req, n);
    if fault != Fault::Pass && fault != Fault::Hold {
        shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .injected
            .push(Injected {
                op: op.clone(),
                path: path.to_string(),
                fault,
                body: req.body.to_vec(),
            });
    }
    let logs = target.is_some();
    match fault {
        Fault::ServerError => {
            let (ctype, body) = if logs {
                (
                    "application/x-amz-json-1.1",
                    r#"{"__type":"ServiceUnavailableException","message":"injected"}"#,
                )
            } else {
                (
                    "application/xml",
                    "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
                )
            };
            answer(&mut client, 500, ctype, body).await
        }
        Fault::Throttle if logs => {
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded (injected)"}"#;
            answer(&mut client, 400, "application/x-amz-json-1.1", body).await
        }
        Fault::Throttle => {
            let body = "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";
            answer(&mut client, 503, "application/xml", body).await
        }
        Fault::BadRequest => {
            let (ctype, body) = if logs {
                (
                    "application/x-amz-json-1.1",
                    r#"{"__type":"InvalidParameterException","message":"injected"}"#,
                )
            } else {
                (
                    "application/xml",
                    "<Error><Code>InvalidRequest</Code><Message>injected</Message></Error>",
                )
            };
            answer(&mut client, 400, ctype, body).await
        }
        Fault::Accept => answer(&mut client, 200, "application/x-amz-json-1.1", "{}").await,
        Fault::ResetBefore => reset(client),
        Fault::Stall => {
            // Hold the connection until the client closes it.
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await? > 0 {}
            Ok(())
        }
        Fault::Hold => {
            forward(upstream, &raw.bytes, head_end).await?;
            // Recorded only now, once the emulator has stored it.
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .injected
                .push(Injected {
                    op: op.clone(),
                    path: path.to_string(),
                    fault: Fault::Hold,
                    body: req.body.to_vec(),
                });
            let mut sink = [0u8; 1024];
            while client.read(&mut sink).await? > 0 {}
            Ok(())
        }
        Fault::Pass | Fault::ResetAfter | Fault::CutBody => {
            let mut response = forward(upstream, &raw.bytes, head_end).await?;
            if op == "logs:GetLogEvents" {
                response = hide_unanswered(shared, response);
            }
            match fault {
                Fault::ResetAfter => reset(client),
                Fault::CutBody => {
                    let body_at = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
                    let cut = body_at + (response.len() - body_at) / 2;
                    client.write_all(&response[..cut]).await?;
                    client.flush().await?;
                    reset(client)
                }
                _ => {
                    client.write_all(&response).await?;
                    client.shutdown().await
                }
            }
        }
    }
}

/// A `GetLogEvents` answer without the events of puts the emulator stored
/// but whose answer was lost, while `Hide` says so (one left out per copy).
fn hide_unanswered(shared: &Mutex<Shared>, response: Vec<u8>) -> Vec<u8> {
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    match s.hide {
        Hide::Nothing => return response,
        Hide::Reads(0) => {
            s.hide = Hide::Nothing;
            return response;
        }
        Hide::Reads(n) => s.hide = Hide::Reads(n - 1),
        Hide::UntilTold => {}
    }
    s.hidden_reads += 1;
    let mut hidden: HashMap<(i64, String), usize> = HashMap::new();
    for i in (s.injected.iter()).filter(|i| i.op == "logs:PutLogEvents" && i.fault.handled()) {
        let body: serde_json::Value = serde_json::from_slice(&i.body).unwrap_or_default();
        for e in body["logEvents"].as_array().into_iter().flatten() {
            let key = (
                e["timestamp"].as_i64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_string(),
            );
            *hidden.entry(key).or_default() += 1;
        }
    }
    drop(s);
    let body_at = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let Ok(mut page) = serde_json::from_slice::<serde_json::Value>(&response[body_at..]) else {
        return response;
    };
    if let Some(events) = page["events"].as_array_mut() {
        events.retain(|e| {
            let key = (
                e["timestamp"].as_i64().unwrap_or(0),
                e["message"].as_str().unwrap_or("").to_string(),
            );
            match hidden.get_mut(&key) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            }
        });
    }
    let body = page.to_string();
    let head = String::from_utf8_lossy(&response[..body_at]);
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    let length = format!("Content-Length: {}", body.len());
    lines.push(&length);
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Events in a `PutLogEvents` request body.
pub fn put_events(body: &[u8]) -> usize {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["logEvents"].as_array().map(Vec::len))
        .unwrap_or(0)
}
