//! The shipper's configuration (contract v1), parsed once at start-up.

use crate::config::{ConfigError, Env, err};
use crate::core::batch::{DEFAULT_MAX_EVENT_BYTES, EVENT_OVERHEAD};
use crate::core::keys::{ChunkKey, DEFAULT_CHECKPOINT_PREFIX, DEFAULT_KEY_PREFIX, TaskRef};
use chrono_tz::Tz;
use std::time::Duration;

/// Retention values CloudWatch Logs accepts.
const RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

#[derive(Debug, Clone)]
pub struct Config {
    pub log_group: String,
    pub stream_template: StreamTemplate,
    pub key_prefix: String,
    pub checkpoint_bucket: Option<String>,
    pub checkpoint_prefix: String,
    /// `LOGDROP_CHECKPOINT_TABLE`: set, checkpoints live in that DynamoDB
    /// table (cheaper per write); unset, in S3 next to the chunks.
    pub checkpoint_table: Option<CheckpointTable>,
    pub timezone: Tz,
    pub create_log_group: bool,
    pub retention_days: Option<u32>,
    pub max_event_bytes: usize,
    /// Objects of one invocation processed at the same time.
    pub object_concurrency: usize,
    /// `PutLogEvents` calls in flight per invocation.
    pub put_concurrency: usize,
    /// `LOGDROP_VISIBILITY_BOUND`: how long CloudWatch Logs may take to show
    /// a stored event to `GetLogEvents`. A read-back that does not find a
    /// batch is only believed this long after the last call that may have
    /// stored it; before, the record fails and its redelivery reads again.
    pub visibility_bound: Duration,
    /// The metrics' `Function` dimension: Lambda's `AWS_LAMBDA_FUNCTION_NAME`,
    /// `shipper` outside Lambda.
    pub function_name: String,
}

/// The default visibility bound: well above the second or two a stored event
/// usually takes to show, and short enough that a crash costs little: an
/// invocation taking over an expired lease finds the stored batches at once
/// and sends what it does not find one lease margin (60 s) after the expiry.
pub const DEFAULT_VISIBILITY_BOUND: Duration = Duration::from_secs(60);

impl Config {
    pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
        let key_prefix = prefix(env, "LOGDROP_KEY_PREFIX", DEFAULT_KEY_PREFIX)?;
        let checkpoint_prefix =
            prefix(env, "LOGDROP_CHECKPOINT_PREFIX", DEFAULT_CHECKPOINT_PREFIX)?;
        if checkpoint_prefix == key_prefix
            || checkpoint_prefix.starts_with(&format!("{key_prefix}/"))
        {
            return Err(err(
                "LOGDROP_CHECKPOINT_PREFIX",
                format!("`{checkpoint_prefix}` must not be under the key prefix `{key_prefix}`"),
            ));
        }
        // Every chunk would look like a checkpoint object and be skipped.
        if key_prefix.starts_with(&format!("{checkpoint_prefix}/")) {
            return Err(err(
                "LOGDROP_KEY_PREFIX",
                format!(
                    "`{key_prefix}` must not be under the checkpoint prefix `{checkpoint_prefix}`"
                ),
            ));
        }
        let tz_name = env.or("LOGDROP_TIMEZONE", "UTC");
        let timezone = tz_name.parse::<Tz>().map_err(|_| {
            err(
                "LOGDROP_TIMEZONE",
                format!("`{tz_name}` is not an IANA time zone name"),
            )
        })?;
        let retention_days = env.parse_opt::<u32>("LOGDROP_RETENTION_DAYS")?;
        if let Some(d) = retention_days.filter(|d| !RETENTION_DAYS.contains(d)) {
            return Err(err(
                "LOGDROP_RETENTION_DAYS",
                format!("{d} is not one of CloudWatch's values {RETENTION_DAYS:?}"),
            ));
        }
        let max_event_bytes = env.parse("LOGDROP_MAX_EVENT_BYTES", DEFAULT_MAX_EVENT_BYTES)?;
        if !(EVENT_OVERHEAD + 1024..=DEFAULT_MAX_EVENT_BYTES).contains(&max_event_bytes) {
            return Err(err(
                "LOGDROP_MAX_EVENT_BYTES",
                format!("{max_event_bytes} is outside 1050..=1048576"),
            ));
        }
        let template = env.or("LOGDROP_STREAM_TEMPLATE", "{file_stem}/{task_id}");
        Ok(Config {
            log_group: env.required("LOGDROP_LOG_GROUP")?,
            stream_template: StreamTemplate::parse(&template)
                .map_err(|p| err("LOGDROP_STREAM_TEMPLATE", p))?,
            key_prefix,
            checkpoint_bucket: env.get("LOGDROP_CHECKPOINT_BUCKET").map(str::to_string),
            checkpoint_prefix,
            checkpoint_table: CheckpointTable::from_env(env)?,
            timezone,
            create_log_group: env.flag("LOGDROP_CREATE_LOG_GROUP", true)?,
            retention_days,
            max_event_bytes,
            object_concurrency: positive(env, "LOGDROP_OBJECT_CONCURRENCY", 4)?,
            put_concurrency: positive(env, "LOGDROP_PUT_CONCURRENCY", 8)?,
            visibility_bound: env.duration("LOGDROP_VISIBILITY_BOUND", DEFAULT_VISIBILITY_BOUND)?,
            function_name: env.or("AWS_LAMBDA_FUNCTION_NAME", "shipper"),
        })
    }
}

/// How long a checkpoint outlives its last write by default. It must outlast
/// every redelivery of the task's chunks (SQS keeps a message at most 14 days,
/// as does the dead-letter queue) or a late duplicate would be shipped again.
pub const DEFAULT_CHECKPOINT_TTL_DAYS: u32 = 30;

/// Where checkpoints go when `LOGDROP_CHECKPOINT_TABLE` is set: a description
/// only; the DynamoDB adapter is built from it (`aws::checkpoint_store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointTable {
    pub table: String,
    /// How long an item outlives its last write (`LOGDROP_CHECKPOINT_TTL_DAYS`).
    pub ttl: Duration,
}

impl CheckpointTable {
    /// `LOGDROP_CHECKPOINT_TABLE` (unset: `None`, the S3 store) and
    /// `LOGDROP_CHECKPOINT_TTL_DAYS` (default 30, at least 15).
    pub fn from_env(env: &Env) -> Result<Option<CheckpointTable>, ConfigError> {
        let ttl_days = env.parse("LOGDROP_CHECKPOINT_TTL_DAYS", DEFAULT_CHECKPOINT_TTL_DAYS)?;
        if ttl_days < 15 {
            return Err(err(
                "LOGDROP_CHECKPOINT_TTL_DAYS",
                format!(
                    "{ttl_days} is too short: a checkpoint must outlive SQS's 14-day redelivery window"
                ),
            ));
        }
        let Some(table) = env.get("LOGDROP_CHECKPOINT_TABLE") else {
            return Ok(None);
        };
        let valid = (3..=255).contains(&table.len())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(err(
                "LOGDROP_CHECKPOINT_TABLE",
                format!("`{table}` is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .)"),
            ));
        }
        Ok(Some(CheckpointTable {
            table: table.to_string(),
            ttl: Duration::from_secs(u64::from(ttl_days) * 86_400),
        }))
    }
}

fn prefix(env: &Env, var: &'static str, default: &str) -> Result<String, ConfigError> {
    let p = env.or(var, default).trim_matches('/').to_string();
    if p.is_empty() {
        return Err(err(var, "must not be empty"));
    }
    Ok(p)
}

fn positive(env: &Env, var: &'static str, default: usize) -> Result<usize, ConfigError> {
    let n = env.parse(var, default)?;
    if n == 0 {
        return Err(err(var, "must be at least 1"));
    }
    Ok(n)
}

/// `LOGDROP_STREAM_TEMPLATE`, checked once so rendering cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTemplate(String);

const PLACEHOLDERS: [&str; 4] = ["{cluster}", "{task_id}", "{file}", "{file_stem}"];

impl StreamTemplate {
    pub fn parse(t: &str) -> Result<Self, String> {
        let mut rest = t.to_string();
        for p in PLACEHOLDERS {
            rest = rest.replace(p, "");
        }
        if rest.contains(['{', '}']) {
            return Err(format!(
                "`{t}` has an unknown placeholder; use {}",
                PLACEHOLDERS.join(", ")
            ));
        }
        if rest.contains([':', '*']) {
            return Err(format!("`{t}`: log stream names cannot contain `:` or `*`"));
        }
        Ok(StreamTemplate(t.to_string()))
    }

    /// `{file_stem}` is the file name before its first `.`, so Tomcat's daily
    /// files (`catalina.2026-11-24.log`) share one stream per task.
    pub fn render(&self, task: &TaskRef, key: &ChunkKey) -> String {
        let stem = key.file.split('.').next().unwrap_or(&key.file);
        let name = self
            .0
            .replace("{cluster}", &task.cluster)
            .replace("{task_id}", &task.task_id)
            .replace("{file_stem}", stem)
            .replace("{file}", &key.file);
        // Stream names: 1..=512 characters, no `:` or `*`.
        let clean: String = name
            .chars()
            .map(|c| if c == ':' || c == '*' { '_' } else { c })
            .take(512)
            .collect();
        if clean.is_empty() { "_".into() } else { clean }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![("LOGDROP_LOG_GROUP", "/ecs/app")]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        Config::from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(
            (c.key_prefix.as_str(), c.checkpoint_prefix.as_str()),
            ("logs", "checkpoints")
        );
        assert_eq!(c.timezone, Tz::UTC);
        assert!(c.create_log_group && c.retention_days.is_none() && c.checkpoint_bucket.is_none());
        assert_eq!(c.max_event_bytes, 1_048_576);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: [(&'static str, &'static str); 9] = [
            ("LOGDROP_VISIBILITY_BOUND", "soon"),
            ("LOGDROP_TIMEZONE", "Mars/Olympus"),
            ("LOGDROP_RETENTION_DAYS", "2"),
            ("LOGDROP_CREATE_LOG_GROUP", "perhaps"),
            ("LOGDROP_STREAM_TEMPLATE", "{pod}"),
            ("LOGDROP_CHECKPOINT_PREFIX", "logs/cp"),
            ("LOGDROP_MAX_EVENT_BYTES", "10"),
            ("LOGDROP_PUT_CONCURRENCY", "0"),
            ("LOGDROP_KEY_PREFIX", "/"),
        ];
        for (var, value) in cases {
            assert_eq!(with(&[(var, value)]).unwrap_err().var, var, "{var}={value}");
        }
        assert_eq!(
            Config::from_env(&Env::from_pairs([])).unwrap_err().var,
            "LOGDROP_LOG_GROUP"
        );
        // And the other way round: chunks under the checkpoint prefix.
        assert_eq!(
            with(&[("LOGDROP_KEY_PREFIX", "checkpoints/logs")])
                .unwrap_err()
                .var,
            "LOGDROP_KEY_PREFIX"
        );
        let moved = with(&[
            ("LOGDROP_KEY_PREFIX", "cp/logs"),
            ("LOGDROP_CHECKPOINT_PREFIX", "cp"),
        ]);
        assert_eq!(moved.unwrap_err().var, "LOGDROP_KEY_PREFIX");
    }

    #[test]
    fn checkpoint_table() {
        let env = |pairs: &[(&'static str, &'static str)]| {
            CheckpointTable::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(env(&[]), Ok(None));
        assert_eq!(
            env(&[("LOGDROP_CHECKPOINT_TABLE", "logdrop-checkpoints")]),
            Ok(Some(CheckpointTable {
                table: "logdrop-checkpoints".into(),
                ttl: Duration::from_secs(30 * 86_400),
            }))
        );
        for (var, value) in [
            ("LOGDROP_CHECKPOINT_TABLE", "a/b"),
            ("LOGDROP_CHECKPOINT_TABLE", "ab"),
            ("LOGDROP_CHECKPOINT_TTL_DAYS", "7"),
            ("LOGDROP_CHECKPOINT_TTL_DAYS", "soon"),
        ] {
            let e = env(&[("LOGDROP_CHECKPOINT_TABLE", "t-1"), (var, value)]);
            assert_eq!(e.unwrap_err().var, var, "{var}={value}");
        }
    }

    #[test]
    fn renders_stream_names() {
        let key = ChunkKey::parse(
            "logs/prod/abc/catalina.2026-11-24.log/0/000000000000000-000000000000010.gz",
            "logs",
        )
        .unwrap();
        let t = StreamTemplate::parse("{file_stem}/{task_id}").unwrap();
        assert_eq!(t.render(&key.task(), &key), "catalina/abc");
        let t = StreamTemplate::parse("{cluster}-{file}").unwrap();
        assert_eq!(t.render(&key.task(), &key), "prod-catalina.2026-11-24.log");
    }
}
