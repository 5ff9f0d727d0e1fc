//! The sweeper Lambda (`bootstrap`, on a schedule, with the file system
//! mounted), and `sweeper [--root DIR]` to run the same sweep once outside
//! Lambda. Wiring only: the sweep is `logdrop::sweeper::sweep`.

use lambda_runtime::{LambdaEvent, service_fn};
use logdrop::aws::{s3::S3, sdk_config};
use logdrop::config::Env;
use logdrop::sweeper::{SweepConfig, SweepReport, sweep};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: sweeper               (inside AWS Lambda, LOGDROP_EFS_ROOT set)
       sweeper [--root DIR]  (one sweep of DIR, or of LOGDROP_EFS_ROOT)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    logdrop::telemetry::init(logdrop::telemetry::Output::Stderr);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--root" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match SweepConfig::from_env(&Env::from_process(), root) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sweeper: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let sdk = sdk_config()
        .await
        .to_builder()
        .timeout_config(logdrop::aws::timeouts::sidecar(
            config.sidecar.upload_timeout,
        ))
        .build();
    let store = S3::new(&sdk);
    if args.is_empty() && std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        return serve(&store, &config).await;
    }
    match sweep(&store, &config, None).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            if report.failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("sweeper: cannot list {}: {e}", config.root.display());
            ExitCode::FAILURE
        }
    }
}

async fn serve(store: &S3, config: &SweepConfig) -> ExitCode {
    let handler = service_fn(|event: LambdaEvent<Value>| async move {
        // The runtime's deadline is wall-clock milliseconds; the sweep runs on the monotonic clock.
        let now = chrono::Utc::now().timestamp_millis();
        let left =
            u64::try_from(i64::try_from(event.context.deadline).unwrap_or(now) - now).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(left);
        sweep(store, config, Some(deadline))
            .await
            .map_err(|e| format!("cannot list {}: {e}", config.root.display()))
            .map(|r: SweepReport| r)
    });
    match lambda_runtime::run(handler).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the Lambda runtime loop ended");
            ExitCode::FAILURE
        }
    }
}
