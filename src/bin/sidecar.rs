//! The sidecar: runs beside Tomcat in the ECS task until SIGTERM/SIGINT, or
//! with `--once` ships everything present now and exits.

use logdrop::aws::{s3::S3, sdk_config};
use logdrop::config::Env;
use logdrop::sidecar::{Config, Mode, Sidecar, SidecarError, identity};
use std::process::ExitCode;
use std::time::Instant;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: sidecar [--once]";
/// `--once` gives up on an upload after this many attempts, instead of waiting forever.
const ONCE_ATTEMPTS: u32 = 8;

fn main() -> ExitCode {
    // One thread: the sidecar shares the task's CPU and memory with Tomcat.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

async fn run() -> ExitCode {
    logdrop::telemetry::init(logdrop::telemetry::Output::Stdout);
    let once = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => false,
        [flag] if flag == "--once" => true,
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let env = Env::from_process();
    let config = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidecar: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let metadata = env.get("ECS_CONTAINER_METADATA_URI_V4").map(str::to_string);
    let (cluster, task_id) =
        match identity::resolve(config.cluster.clone(), config.task_id.clone(), metadata).await {
            Ok(id) => id,
            Err(e) => {
                eprintln!("sidecar: {e}");
                return ExitCode::from(2);
            }
        };
    // Signals are caught from the start, so a stop during start-up is not lost.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("sidecar: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let sdk = sdk_config().await;
    tracing::info!(cluster, task_id, bucket = config.bucket, log_dir = %config.log_dir.display(), "sidecar starting");
    let grace = config.shutdown_grace;
    let mut sidecar = match Sidecar::start(S3::new(&sdk), config.clone(), cluster, task_id).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if once {
        sidecar.max_attempts = Some(ONCE_ATTEMPTS);
        return match drain(&mut sidecar).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let mut last_summary = Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            r = follow_once(&mut sidecar, &config) => if let Err(e) = r {
                tracing::error!(error = %e, "pass failed; retrying");
            },
        }
        if last_summary.elapsed() >= config.summary_interval {
            summary(&sidecar);
            last_summary = Instant::now();
        }
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "stopping: shipping everything held"
    );
    let code = match tokio::time::timeout(grace, drain(&mut sidecar)).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "could not ship everything before stopping; the rest ships after a restart");
            ExitCode::SUCCESS
        }
        Err(_) => {
            tracing::error!("shutdown grace ran out; what is left ships after a restart");
            ExitCode::SUCCESS
        }
    };
    summary(&sidecar);
    code
}

async fn follow_once(sidecar: &mut Sidecar<S3>, config: &Config) -> Result<(), SidecarError> {
    tokio::time::sleep(config.poll_interval).await;
    sidecar.pass(Mode::Follow).await?;
    sidecar.prune();
    Ok(())
}

async fn drain(sidecar: &mut Sidecar<S3>) -> Result<(), SidecarError> {
    while sidecar.pass(Mode::Drain).await? {}
    Ok(())
}

fn summary(s: &Sidecar<S3>) {
    let t = s.totals;
    tracing::info!(
        bytes = t.bytes,
        chunks = t.chunks,
        failed_attempts = t.failed_attempts,
        lag_bytes = s.lag_bytes(),
        files = s.followed_files(),
        "summary"
    );
}

fn fail(e: &SidecarError) -> ExitCode {
    tracing::error!(error = %e, "sidecar failed");
    eprintln!("sidecar: {e}");
    ExitCode::FAILURE
}
