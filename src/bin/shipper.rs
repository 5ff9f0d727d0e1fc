//! The shipper Lambda (`bootstrap`), `shipper invoke --event FILE` to run
//! the same handler once outside Lambda, `shipper poll --queue-url URL`
//! to consume an SQS queue with it, and `shipper audit` / `shipper replay`
//! to prove a task's logs all shipped, and ship what did not.

use lambda_runtime::{LambdaEvent, service_fn};
use logdrop::aws::checkpoint_store::AnyCheckpointStore;
use logdrop::aws::sqs::Sqs;
use logdrop::aws::{logs::CloudWatchLogs, s3::S3, shipper_sdk_config};
use logdrop::config::Env;
use logdrop::shipper::inventory::{self, Args, Sources, Target};
use logdrop::shipper::poll::{self, PollOptions};
use logdrop::shipper::replay;
use logdrop::shipper::{Config, HandlerError, Invocation, Shipper};
use serde_json::Value;
use std::process::ExitCode;
use tracing::Instrument;

const USAGE: &str = "usage: shipper                      (inside AWS Lambda)
       shipper invoke --event FILE  (run the handler once on a Lambda event JSON)
       shipper poll --queue-url URL [--until-empty] [--wait-seconds N]
                                    (ship what an SQS queue delivers; delete what succeeded)
       shipper audit --bucket B (--cluster C --task T | --since WHEN [--cluster C])
                     [--json] [--at WHEN]
                                    (list what is missing; exit 0 only when nothing is)
       shipper replay (--bucket B (--cluster C --task T | --since WHEN [--cluster C])
                       | --from AUDIT_JSON) [--json]
                                    (ship what the audit found unshipped)
       WHEN: an RFC 3339 time, or an age such as 90m, 6h, 2d";

/// What the command line asks for.
enum Command {
    Serve,
    Invoke(String),
    Poll(PollOptions),
    Audit(Args),
    Replay(Args),
}

fn command(args: &[String]) -> Option<Command> {
    let now = chrono::Utc::now();
    let flags = |rest: &[String]| {
        Args::parse(rest, now)
            .map_err(|e| eprintln!("shipper: {e}"))
            .ok()
    };
    match args {
        [cmd, rest @ ..] if cmd == "audit" => match flags(rest)? {
            Args {
                target: Target::From(_),
                ..
            } => None,
            a => Some(Command::Audit(a)),
        },
        [cmd, rest @ ..] if cmd == "replay" => match flags(rest)? {
            Args { at: Some(_), .. } => None,
            a => Some(Command::Replay(a)),
        },
        [] if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => Some(Command::Serve),
        [cmd, flag, file] if cmd == "invoke" && flag == "--event" => {
            Some(Command::Invoke(file.clone()))
        }
        [cmd, rest @ ..] if cmd == "poll" => {
            let mut options = PollOptions {
                queue_url: String::new(),
                wait_seconds: 20,
                until_empty: false,
            };
            let mut rest = rest.iter();
            while let Some(flag) = rest.next() {
                match flag.as_str() {
                    "--queue-url" => options.queue_url = rest.next()?.clone(),
                    "--until-empty" => options.until_empty = true,
                    "--wait-seconds" => {
                        options.wait_seconds =
                            rest.next()?.parse().ok().filter(|s| (0..=20).contains(s))?
                    }
                    _ => return None,
                }
            }
            (!options.queue_url.is_empty()).then_some(Command::Poll(options))
        }
        _ => None,
    }
}

/// A local invocation (or one without a deadline) gets Lambda's maximum timeout.
const LOCAL_DEADLINE_MS: i64 = 15 * 60 * 1000;

#[tokio::main]
async fn main() -> ExitCode {
    logdrop::telemetry::init(logdrop::telemetry::Output::Stderr);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = command(&args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let config = match Config::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shipper: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let sdk = shipper_sdk_config().await;
    // Built on the same SDK config, so the store has the shipper's timeouts.
    let checkpoints = AnyCheckpointStore::new(&sdk, config.checkpoint_table.as_ref());
    // Debug: at INFO every line belongs to an invocation (Lambda's request id).
    tracing::debug!(
        checkpoint_store = checkpoints.describe(),
        "checkpoint store"
    );
    let mut shipper = Shipper::new(
        S3::new(&sdk),
        checkpoints,
        CloudWatchLogs::new(&sdk),
        config,
    );
    // Beside the JSON lines: Lambda's log group turns them into metrics.
    shipper.metrics = Some(logdrop::telemetry::Output::Stderr);
    match command {
        Command::Invoke(file) => invoke_once(&shipper, &file).await,
        Command::Serve => serve(&shipper).await,
        Command::Poll(options) => {
            let queue = Sqs::new(&sdk, &options.queue_url, options.wait_seconds);
            poll_queue(&shipper, &queue, &options).await
        }
        Command::Audit(args) => match audit(&shipper, &args).await {
            Ok(report) => {
                print_out(args.json, &report, &report.table());
                if report.clean {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(code) => code,
        },
        Command::Replay(args) => replay_unshipped(&shipper, &args).await,
    }
}

type LambdaShipper = Shipper<S3, AnyCheckpointStore, CloudWatchLogs>;

/// The audit the flags ask for, or a report it wrote (`--from`); exit 2
/// when the listing or the report cannot be read.
async fn audit(
    shipper: &LambdaShipper,
    args: &Args,
) -> Result<logdrop::shipper::audit::Report, ExitCode> {
    match &args.target {
        Target::Select { bucket, selection } => {
            let src = Sources {
                index: &shipper.objects,
                checkpoints: &shipper.checkpoints,
                config: &shipper.config,
                bucket,
            };
            let at = args.at.unwrap_or_else(chrono::Utc::now);
            inventory::audit(&src, selection, at).await.map_err(|e| {
                eprintln!("shipper: {e}");
                ExitCode::from(2)
            })
        }
        Target::From(file) => std::fs::read(file)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| {
                eprintln!("shipper: cannot read the audit report {file}: {e}");
                ExitCode::from(2)
            }),
    }
}

/// Ships what the audit found unshipped; exit 1 if any object failed.
async fn replay_unshipped(shipper: &LambdaShipper, args: &Args) -> ExitCode {
    let report = match audit(shipper, args).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let keys = report.unshipped();
    let now = chrono::Utc::now().timestamp_millis();
    let request_id = format!("replay-{now}-{}", std::process::id());
    let span = tracing::info_span!("replay", requestId = request_id);
    let done = replay::replay(
        shipper,
        &report.bucket,
        &keys,
        &request_id,
        LOCAL_DEADLINE_MS,
    )
    .instrument(span)
    .await;
    print_out(args.json, &done, &done.lines());
    if done.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `value` as JSON with `--json`, else the human text.
fn print_out(json: bool, value: &impl serde::Serialize, text: &str) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        print!("{text}");
    }
}

/// Exit 0 when every message shipped, 1 when some failed (they stay in the
/// queue) or the queue could not be read.
async fn poll_queue(shipper: &LambdaShipper, queue: &Sqs, options: &PollOptions) -> ExitCode {
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::error!("cannot catch SIGTERM/SIGINT; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
        tracing::info!("stopping after the batch in hand");
    };
    match poll::run(shipper, queue, options, shutdown).await {
        Ok(summary) => {
            println!("{}", serde_json::to_string(&summary).unwrap_or_default());
            if summary.failed == 0 && summary.queue_errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "polling stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(shipper: &LambdaShipper) -> ExitCode {
    let handler = service_fn(|event: LambdaEvent<Value>| async move {
        // Lambda always sends a deadline ahead of now; local emulators may send
        // none, or a meaningless one: treat those as the maximum timeout.
        let now = chrono::Utc::now().timestamp_millis();
        let deadline_ms = match i64::try_from(event.context.deadline) {
            Ok(ms) if ms > now - 60_000 => ms,
            // `cargo lambda watch` sends the timeout itself (e.g. 600000).
            Ok(ms) if ms > 0 && ms <= LOCAL_DEADLINE_MS => now + ms,
            _ => {
                tracing::warn!(
                    deadline = event.context.deadline,
                    "no usable deadline from the runtime; assuming 15 minutes"
                );
                now + LOCAL_DEADLINE_MS
            }
        };
        let inv = Invocation {
            request_id: event.context.request_id.clone(),
            deadline_ms,
        };
        shipper.handle(&event.payload, &inv).await
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime loop ended");
            ExitCode::FAILURE
        }
    }
}

async fn invoke_once(shipper: &LambdaShipper, file: &str) -> ExitCode {
    let event: Value = match std::fs::read(file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("shipper: cannot read the event {file}: {e}");
            return ExitCode::from(2);
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let inv = Invocation {
        request_id: format!("local-{now}-{}", std::process::id()),
        deadline_ms: now + LOCAL_DEADLINE_MS,
    };
    let span = tracing::info_span!("invoke", requestId = inv.request_id);
    let (response, code) = match shipper.handle(&event, &inv).instrument(span).await {
        Ok(r) if r.has_failures() => (r.to_json(), ExitCode::FAILURE),
        Ok(r) => (r.to_json(), ExitCode::SUCCESS),
        Err(HandlerError::Records { response, .. }) => (
            serde_json::to_value(response).unwrap_or_default(),
            ExitCode::FAILURE,
        ),
        Err(e) => {
            eprintln!("shipper: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&response).unwrap_or_default()
    );
    code
}
