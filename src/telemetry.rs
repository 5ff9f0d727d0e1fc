//! Structured JSON logs, the same for both binaries.

use tracing_subscriber::filter::LevelFilter;

/// Where the JSON lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The sidecar: the container's log driver reads stdout.
    Stdout,
    /// The shipper: stdout is kept for `shipper invoke`'s response.
    Stderr,
}

/// JSON lines at the level `RUST_LOG` names (`error`, `warn`, `info`,
/// `debug`, `trace`; default `info`). A plain level instead of per-module
/// directives keeps a regex engine out of the binaries.
pub fn init(output: Output) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| parse_level(&v))
        .unwrap_or(LevelFilter::INFO);
    let builder = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false);
    let _ = match output {
        Output::Stdout => builder.with_writer(std::io::stdout).try_init(),
        Output::Stderr => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// The level of `RUST_LOG`; for directives like `logdrop=debug,info` the last level named.
fn parse_level(value: &str) -> Option<LevelFilter> {
    value
        .rsplit(',')
        .find_map(|d| d.rsplit('=').next()?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("logdrop=trace"), Some(LevelFilter::TRACE));
        assert_eq!(parse_level("warn,logdrop=debug"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("loud"), None);
    }
}
