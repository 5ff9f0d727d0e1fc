//! Reading environment variables into typed values; errors name the variable.

use std::collections::HashMap;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

/// A snapshot of the environment, so parsing is testable without touching the process.
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// The same environment without `vars`.
    pub fn without(&self, vars: &[&str]) -> Env {
        let mut map = self.0.clone();
        for v in vars {
            map.remove(*v);
        }
        Env(map)
    }

    /// A set, non-empty value.
    pub fn get(&self, var: &'static str) -> Option<&str> {
        self.0.get(var).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_string)
            .ok_or_else(|| ConfigError {
                var,
                problem: "is required but not set".into(),
            })
    }

    pub fn or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_string()
    }

    pub fn parse<T: FromStr>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.parse_opt(var).map(|v| v.unwrap_or(default))
    }

    pub fn parse_opt<T: FromStr>(&self, var: &'static str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        self.get(var)
            .map(|raw| {
                raw.parse::<T>().map_err(|e| ConfigError {
                    var,
                    problem: format!("`{raw}` is not valid: {e}"),
                })
            })
            .transpose()
    }

    pub fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError {
                var,
                problem: format!("`{other}` is not true or false"),
            }),
        }
    }

    /// A duration such as `500ms`, `5s`, `2m` (a bare number is seconds).
    pub fn duration(
        &self,
        var: &'static str,
        default: std::time::Duration,
    ) -> Result<std::time::Duration, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        let d = parse_duration(raw).ok_or_else(|| ConfigError {
            var,
            problem: format!("`{raw}` is not a duration like 500ms, 5s or 2m"),
        })?;
        if d > MAX_DURATION {
            return Err(ConfigError {
                var,
                problem: format!("`{raw}` is longer than the longest accepted duration, 8760h"),
            });
        }
        Ok(d)
    }
}

/// The longest duration any variable takes (a year). Durations are added to
/// clock readings and to each other; this keeps every such sum far from overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// `None` for anything that is not a finite, non-negative duration that fits
/// a `Duration` (never a panic, whatever the digits).
pub fn parse_duration(raw: &str) -> Option<std::time::Duration> {
    let (num, unit) = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((raw, "s"), |i| raw.split_at(i));
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    std::time::Duration::try_from_secs_f64(secs).ok()
}

pub fn err(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("100000000000000000000"), None);
        assert_eq!(parse_duration("1e400"), None);
    }

    #[test]
    fn huge_durations_are_errors_naming_the_variable() {
        for raw in ["100000000000000000000", "8761h", "99999999999999999999h"] {
            let env = Env::from_pairs([("LOGDROP_SHUTDOWN_GRACE", raw)]);
            let e = env
                .duration("LOGDROP_SHUTDOWN_GRACE", Duration::ZERO)
                .unwrap_err();
            assert_eq!(e.var, "LOGDROP_SHUTDOWN_GRACE", "{raw}");
        }
        let env = Env::from_pairs([("D", "8760h")]);
        assert_eq!(env.duration("D", Duration::ZERO), Ok(MAX_DURATION));
    }

    #[test]
    fn errors_name_the_variable() {
        let env = Env::from_pairs([("A", "maybe"), ("B", "x")]);
        assert_eq!(env.flag("A", true).unwrap_err().var, "A");
        assert_eq!(
            env.parse::<u32>("B", 1).unwrap_err().to_string(),
            "B: `x` is not valid: invalid digit found in string"
        );
        assert_eq!(
            env.required("C").unwrap_err().to_string(),
            "C: is required but not set"
        );
    }
}
