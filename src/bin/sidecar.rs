//! The sidecar: runs beside Tomcat in the ECS task until SIGTERM/SIGINT, or
//! with `--once` ships everything present now and exits. Wiring only: the
//! loop is `Sidecar::run`.

use logdrop::aws::task_metadata::resolve;
use logdrop::aws::{s3::S3, sdk_config, timeouts};
use logdrop::config::Env;
use logdrop::sidecar::{Config, Sidecar, SidecarError};
use std::process::ExitCode;
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
    let mut config = match Config::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sidecar: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let metadata = env.get("ECS_CONTAINER_METADATA_URI_V4").map(str::to_string);
    let (cluster, task_id) =
        match resolve(config.cluster.clone(), config.task_id.clone(), metadata).await {
            Ok(id) => id,
            Err(e) => {
                eprintln!("sidecar: {e}");
                return ExitCode::from(2);
            }
        };
    config.on_efs(&cluster, &task_id);
    // Signals are caught from the start, so a stop during start-up is not lost.
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("sidecar: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // Request timeouts: a request whose answer never comes must not block every file.
    let sdk = sdk_config()
        .await
        .to_builder()
        .timeout_config(timeouts::sidecar(config.upload_timeout))
        .build();
    tracing::info!(cluster, task_id, bucket = config.bucket, log_dir = %config.log_dir.display(), "sidecar starting");
    let mut sidecar = match Sidecar::start(S3::new(&sdk), config, cluster, task_id).await {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    // Beside the JSON lines; the task's log driver makes them metrics.
    sidecar.set_metrics(logdrop::telemetry::Output::Stdout);
    if once {
        sidecar.set_max_attempts(ONCE_ATTEMPTS);
        let result = sidecar.once().await;
        sidecar.summary();
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let shutdown = async {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    };
    // What stayed behind is named in the last line; ECS ignores the code.
    sidecar.run(shutdown).await;
    ExitCode::SUCCESS
}

fn fail(e: &SidecarError) -> ExitCode {
    tracing::error!(error = %e, "sidecar failed");
    eprintln!("sidecar: {e}");
    ExitCode::FAILURE
}
