//! Structured JSON logs, the same for both binaries.

/// JSON lines on stderr (`RUST_LOG` filters; default `info`). stdout stays free
/// for command output such as `shipper invoke`'s response.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
