//! Structured logs, the same for both binaries, following Lambda's advanced
//! logging controls: `AWS_LAMBDA_LOG_LEVEL` and `AWS_LAMBDA_LOG_FORMAT`
//! (which the template's `LoggingConfig` sets) as lambda_runtime's own
//! subscriber reads them, without its regex-based filter.
//!
//! A JSON line carries the message and the event's fields at the top level
//! (`{"timestamp", "level", "message", "key", ...}`) and the current span
//! under `span`: the Lambda runtime opens one per invocation with its
//! `requestId`, and `shipper invoke` / `shipper poll` open the same, so every
//! line of an invocation names its request.

use tracing_subscriber::filter::LevelFilter;

/// Where the lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The sidecar: the container's log driver reads stdout.
    Stdout,
    /// The shipper: stdout is kept for `shipper invoke`'s response.
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// `AWS_LAMBDA_LOG_FORMAT=Text`: tracing's plain lines, no colours.
    Text,
}

/// Level and format from the environment: `AWS_LAMBDA_LOG_LEVEL` first
/// (`TRACE` .. `FATAL`), else `RUST_LOG` (a plain level; for directives like
/// `logdrop=debug,info` the last level named), else `INFO`. JSON unless
/// `AWS_LAMBDA_LOG_FORMAT` says `Text`.
pub fn settings(var: impl Fn(&str) -> Option<String>) -> (LevelFilter, Format) {
    let level = var("AWS_LAMBDA_LOG_LEVEL")
        .and_then(|v| lambda_level(&v))
        .or_else(|| var("RUST_LOG").and_then(|v| parse_level(&v)))
        .unwrap_or(LevelFilter::INFO);
    let format = match var("AWS_LAMBDA_LOG_FORMAT") {
        Some(f) if f.eq_ignore_ascii_case("text") => Format::Text,
        _ => Format::Json,
    };
    (level, format)
}

pub fn init(output: Output) {
    let (level, format) = settings(|name| std::env::var(name).ok());
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false);
    let _ = match (format, output) {
        (Format::Json, out) => {
            let json = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            match out {
                Output::Stdout => json.with_writer(std::io::stdout).try_init(),
                Output::Stderr => json.with_writer(std::io::stderr).try_init(),
            }
        }
        (Format::Text, Output::Stdout) => builder.with_writer(std::io::stdout).try_init(),
        (Format::Text, Output::Stderr) => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Lambda's level names; `FATAL` has no tracing level and means errors only.
fn lambda_level(value: &str) -> Option<LevelFilter> {
    if value.trim().eq_ignore_ascii_case("fatal") {
        return Some(LevelFilter::ERROR);
    }
    value.trim().parse().ok()
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

    #[test]
    fn lambda_controls_come_first() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(settings(env(&[])), (LevelFilter::INFO, Format::Json));
        assert_eq!(
            settings(env(&[("RUST_LOG", "debug")])),
            (LevelFilter::DEBUG, Format::Json)
        );
        assert_eq!(
            settings(env(&[
                ("RUST_LOG", "debug"),
                ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
                ("AWS_LAMBDA_LOG_FORMAT", "JSON")
            ])),
            (LevelFilter::WARN, Format::Json)
        );
        assert_eq!(
            settings(env(&[
                ("AWS_LAMBDA_LOG_LEVEL", "FATAL"),
                ("AWS_LAMBDA_LOG_FORMAT", "Text")
            ])),
            (LevelFilter::ERROR, Format::Text)
        );
        // An unknown Lambda level falls back to RUST_LOG, then INFO.
        assert_eq!(
            settings(env(&[
                ("AWS_LAMBDA_LOG_LEVEL", "LOUD"),
                ("RUST_LOG", "trace")
            ])),
            (LevelFilter::TRACE, Format::Json)
        );
    }
}
