//! A small Prometheus text-format registry: counters, gauges and `_duration_seconds`
//! histograms with labels, rendered on demand. `serve` owns one for `/metrics`; each one-shot
//! run (restore, compact, validate, initialize) fills its own and exports it at the end
//! (`--metrics-file`, `--pushgateway`).
//!
//! ```
//! use etcd_restore::metrics::Registry;
//! let r = Registry::new();
//! r.observe("etcdbr_validation_duration_seconds", "Total latency distribution of validating data directory.",
//!           &[("succeeded", "true")], 0.25);
//! r.inc("etcd_restore_initializations_total", "Initializations run.", &[("result", "successful")]);
//! assert!(r.render().contains("etcdbr_validation_duration_seconds_count{succeeded=\"true\"} 1"));
//! ```
//!
//! A name keeps the kind it was first used with; using it as another kind is ignored (and
//! logged) rather than corrupting the exposition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Upper bounds (seconds) of the duration histograms: Prometheus' default buckets stretched
/// to restores that take many minutes.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 1800.0,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug)]
enum Series {
    Value(f64),
    Histogram {
        /// Non-cumulative counts per bucket of [`DURATION_BUCKETS`].
        buckets: [u64; DURATION_BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Family {
    help: String,
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

/// A set of metric families, safe to share between threads.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &str, help: &str, labels: &[(&str, &str)]) {
        self.with(name, help, Kind::Counter, labels, |s| {
            if let Series::Value(v) = s {
                *v += 1.0;
            }
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.with(name, help, Kind::Gauge, labels, |s| {
            if let Series::Value(v) = s {
                *v = value;
            }
        });
    }

    /// Records a duration in seconds into a histogram ([`DURATION_BUCKETS`]).
    pub fn observe(&self, name: &str, help: &str, labels: &[(&str, &str)], seconds: f64) {
        self.with(name, help, Kind::Histogram, labels, |s| {
            if let Series::Histogram {
                buckets,
                sum,
                count,
            } = s
            {
                if let Some(b) = DURATION_BUCKETS
                    .iter()
                    .position(|b| seconds <= *b)
                    .and_then(|i| buckets.get_mut(i))
                {
                    *b += 1;
                }
                *sum += seconds;
                *count += 1;
            }
        });
    }

    fn with(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut Series),
    ) {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            kind,
            series: BTreeMap::new(),
        });
        if fam.kind != kind {
            tracing::warn!(
                metric = name,
                "metric used as a {} but registered as a {}; ignored",
                kind.as_str(),
                fam.kind.as_str()
            );
            return;
        }
        let mut key: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        key.sort();
        let series = fam.series.entry(key).or_insert_with(|| match kind {
            Kind::Histogram => Series::Histogram {
                buckets: [0; DURATION_BUCKETS.len()],
                sum: 0.0,
                count: 0,
            },
            Kind::Counter | Kind::Gauge => Series::Value(0.0),
        });
        f(series);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind.as_str());
            for (labels, s) in &fam.series {
                match s {
                    Series::Value(v) => {
                        let _ = writeln!(out, "{name}{} {}", fmt_labels(labels, None), num(*v));
                    }
                    Series::Histogram {
                        buckets,
                        sum,
                        count,
                    } => {
                        let mut acc = 0u64;
                        for (le, n) in DURATION_BUCKETS.iter().zip(buckets) {
                            acc += n;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {acc}",
                                fmt_labels(labels, Some(&num(*le)))
                            );
                        }
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            fmt_labels(labels, Some("+Inf"))
                        );
                        let _ =
                            writeln!(out, "{name}_sum{} {}", fmt_labels(labels, None), num(*sum));
                        let _ = writeln!(out, "{name}_count{} {count}", fmt_labels(labels, None));
                    }
                }
            }
        }
        out
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_labels(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_value(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_labels_sorted_and_escaped() {
        let r = Registry::new();
        r.observe("x_duration_seconds", "h", &[("b", "2"), ("a", "q\"")], 0.3);
        r.observe("x_duration_seconds", "h", &[("a", "q\""), ("b", "2")], 7.0);
        let t = r.render();
        assert!(t.contains("# TYPE x_duration_seconds histogram\n"), "{t}");
        assert!(
            t.contains("x_duration_seconds_bucket{a=\"q\\\"\",b=\"2\",le=\"0.25\"} 0\n"),
            "{t}"
        );
        assert!(t.contains("le=\"0.5\"} 1\n"), "{t}");
        assert!(t.contains("le=\"10\"} 2\n"), "{t}");
        assert!(t.contains("le=\"+Inf\"} 2\n"), "{t}");
        assert!(
            t.contains("x_duration_seconds_sum{a=\"q\\\"\",b=\"2\"} 7.3\n"),
            "{t}"
        );
        assert!(
            t.contains("x_duration_seconds_count{a=\"q\\\"\",b=\"2\"} 2\n"),
            "{t}"
        );
    }

    #[test]
    fn counters_gauges_and_kind_conflicts() {
        let r = Registry::new();
        r.inc("c_total", "c", &[]);
        r.inc("c_total", "c", &[]);
        r.set("g", "g", &[("state", "New")], 1.0);
        r.set("g", "g", &[("state", "New")], 0.0);
        r.observe("c_total", "c", &[], 1.0);
        let t = r.render();
        assert!(t.contains("c_total 2\n"), "{t}");
        assert!(t.contains("g{state=\"New\"} 0\n"), "{t}");
        assert!(!t.contains("c_total_bucket"), "{t}");
    }
}
