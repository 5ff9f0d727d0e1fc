//! Metrics as CloudWatch Embedded Metric Format (EMF) lines, the same for
//! both binaries: a JSON object whose `_aws` member names the metrics and
//! dimensions among its other members. CloudWatch Logs turns such a log event
//! into metric data points as it ingests it, so neither binary calls
//! `PutMetricData` (no request, no permission): the shipper's lines go to its
//! Lambda log group, the sidecar's to the task's log driver (README, Metrics).
//!
//! A line is built with [`Line`] and written whole with [`emit`], to the
//! stream the binary's tracing lines use. Dimensions stay few on purpose:
//! every distinct combination of dimension values is a custom metric billed by
//! the month, so lines carry the function or the cluster, never the task.

use crate::telemetry::Output;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;

/// The CloudWatch namespace of every logdrop metric.
pub const NAMESPACE: &str = "logdrop";
/// Values one metric may carry in a line (the specification's limit).
pub const MAX_VALUES: usize = 100;

/// The CloudWatch units logdrop uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Bytes,
    Milliseconds,
    Seconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One EMF document: its time, its dimensions, its metrics (each one value or
/// up to [`MAX_VALUES`]) and plain members kept for reading the line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    timestamp_ms: i64,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, Unit, Vec<f64>)>,
    properties: Vec<(&'static str, Value)>,
}

impl Line {
    pub fn new(timestamp_ms: i64) -> Self {
        Line {
            timestamp_ms,
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Vec::new(),
        }
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.metrics.push((name, unit, vec![value]));
        self
    }

    pub fn count(self, name: &'static str, n: u64) -> Self {
        self.metric(name, Unit::Count, n as f64)
    }

    /// A distribution: every value is one sample. More than [`MAX_VALUES`]
    /// are reduced to that many by [`sample`]; none leaves the metric out.
    pub fn values(mut self, name: &'static str, unit: Unit, values: Vec<f64>) -> Self {
        if !values.is_empty() {
            self.metrics.push((name, unit, sample(values, MAX_VALUES)));
        }
        self
    }

    /// A member that is not a metric (a message, a reason): for the reader.
    pub fn property(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The value of metric `name`, if the line has it (for tests and reports).
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        (self.metrics.iter())
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| v.as_slice())
    }

    pub fn to_json(&self) -> String {
        let mut root = Map::new();
        let dims: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        let defs: Vec<Value> = (self.metrics.iter())
            .map(|(n, u, _)| json!({ "Name": n, "Unit": u.name() }))
            .collect();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{ "Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": defs }],
            }),
        );
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), Value::from(value.as_str()));
        }
        for (name, _, values) in &self.metrics {
            let v = match values.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            root.insert((*name).into(), v);
        }
        for (name, value) in &self.properties {
            root.insert((*name).into(), value.clone());
        }
        Value::Object(root).to_string()
    }
}

/// Writes the line, newline included, in one call on the locked stream, so
/// it never interleaves with a tracing line.
pub fn emit(line: &Line, output: Output) {
    let mut text = line.to_json();
    text.push('\n');
    // A closed stdout or stderr is no reason to stop shipping.
    let _ = match output {
        Output::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
        Output::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
}

/// At most `max` values standing for `values`: all of them when they fit,
/// else the values at `max` evenly spaced ranks of the sorted set (rank
/// `(i + ½)·n/max`), so each stands for an equal share and the percentiles
/// CloudWatch computes from them stay those of the whole set.
pub fn sample(mut values: Vec<f64>, max: usize) -> Vec<f64> {
    if values.len() <= max {
        return values;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (0..max)
        .map(|i| values[((2 * i + 1) * n / (2 * max)).min(n - 1)])
        .collect()
}

/// A distribution of durations kept in buckets, so an invocation of
/// millions of events holds a few hundred counters: 100 ms wide below 1 s,
/// 1 s wide below 10 min, 1 min wide beyond. Negative durations (an event
/// stamped ahead of the clock) count as 0.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: BTreeMap<u64, u64>,
    count: u64,
}

impl Histogram {
    fn width(ms: u64) -> u64 {
        match ms {
            0..1_000 => 100,
            1_000..600_000 => 1_000,
            _ => 60_000,
        }
    }

    pub fn record(&mut self, ms: i64, times: u64) {
        if times == 0 {
            return;
        }
        let ms = ms.max(0) as u64;
        let low = ms - ms % Self::width(ms);
        *self.buckets.entry(low).or_default() += times;
        self.count += times;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (low, n) in &other.buckets {
            *self.buckets.entry(*low).or_default() += n;
        }
        self.count += other.count;
    }

    /// At most `max` values (milliseconds, each a bucket's middle) standing
    /// for the recorded ones as [`sample`] does: every one when they fit,
    /// else the values at `max` evenly spaced ranks.
    pub fn values(&self, max: usize) -> Vec<f64> {
        let mid = |low: u64| (low + Self::width(low) / 2) as f64;
        if self.count <= max as u64 {
            return (self.buckets.iter())
                .flat_map(|(low, n)| std::iter::repeat_n(mid(*low), *n as usize))
                .collect();
        }
        let n = self.count as u128;
        let mut ranks = (0..max as u128).map(|i| ((2 * i + 1) * n / (2 * max as u128)) as u64);
        let (mut out, mut seen) = (Vec::with_capacity(max), 0u64);
        let mut next = ranks.next();
        for (low, count) in &self.buckets {
            seen += count;
            while next.is_some_and(|r| r < seen) {
                out.push(mid(*low));
                next = ranks.next();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_metrics_and_dimensions() {
        let line = Line::new(1_700_000_000_000)
            .dimension("Function", "ship")
            .count("EventsShipped", 3)
            .values("Lag", Unit::Milliseconds, vec![5.0, 1.0])
            .values("Nothing", Unit::Milliseconds, vec![])
            .property("message", "invocation metrics");
        let v: Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(d["Namespace"], "logdrop");
        assert_eq!(d["Dimensions"], json!([["Function"]]));
        assert_eq!(
            d["Metrics"],
            json!([{"Name": "EventsShipped", "Unit": "Count"}, {"Name": "Lag", "Unit": "Milliseconds"}])
        );
        assert_eq!(v["Function"], "ship");
        assert_eq!(v["EventsShipped"], 3.0);
        assert_eq!(v["Lag"], json!([5.0, 1.0]));
        assert!(v.get("Nothing").is_none());
        assert_eq!(v["message"], "invocation metrics");
    }

    #[test]
    fn samples_keep_the_shares() {
        let all: Vec<f64> = (0..1000).map(f64::from).rev().collect();
        let s = sample(all, 100);
        assert_eq!(s.len(), 100);
        assert_eq!(s[0], 5.0);
        assert_eq!(s[49], 495.0);
        assert_eq!(s[99], 995.0);
        assert_eq!(sample(vec![3.0, 1.0], 100), vec![3.0, 1.0]);
    }

    #[test]
    fn histogram_buckets_and_ranks() {
        let mut h = Histogram::default();
        h.record(-5, 1);
        h.record(250, 2);
        h.record(61_999, 1);
        h.record(700_000, 1);
        assert_eq!(h.count(), 5);
        assert_eq!(h.values(100), vec![50.0, 250.0, 250.0, 61_500.0, 690_000.0]);
        let mut many = Histogram::default();
        many.record(1_000, 900);
        many.record(30_000, 100);
        let v = many.values(100);
        assert_eq!(v.len(), 100);
        assert_eq!(v.iter().filter(|x| **x == 1_500.0).count(), 90);
        assert_eq!(v.iter().filter(|x| **x == 30_500.0).count(), 10);
        let mut merged = h.clone();
        merged.merge(&many);
        assert_eq!(merged.count(), 1_005);
    }
}
