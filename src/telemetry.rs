//! Structured JSON logs, the same for both binaries.

use tracing_subscriber::filter::LevelFilter;

/// JSON lines on stderr, at the level `RUST_LOG` names (`error`, `warn`,
/// `info`, `debug`, `trace`; default `info`). stdout stays free for command
/// output such as `shipper invoke`'s response. A plain level instead of
/// per-module directives keeps a regex engine out of the binaries.
pub fn init() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| parse_level(&v))
        .unwrap_or(LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
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
