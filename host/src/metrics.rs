//! `metrics.rs` counts what the HTTP server does (requests by route and
//! status, latency, requests in flight, guest failures) and renders every
//! metric of the host in the Prometheus text format. It owns the counters
//! the server feeds; the tunnel, the pool and the registry keep their own
//! figures and are only read here, when `/_burrow/metrics` is scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The server's counters; one per process, shared by every connection.
#[derive(Default)]
pub struct Metrics {
    /// Requests answered, by route and status, and their latency by route.
    /// One lock per finished request: cheap next to a guest call.
    requests: Mutex<RequestStats>,
    /// Requests accepted and not yet finished.
    in_flight: AtomicI64,
}

#[derive(Default)]
struct RequestStats {
    /// (route or `-`, status) → count.
    by_status: BTreeMap<(String, u16), u64>,
    /// route → latency histogram.
    latency: BTreeMap<String, Histogram>,
    /// (route, kind) → guest failures.
    failures: BTreeMap<(String, &'static str), u64>,
}

#[derive(Default, Clone)]
struct Histogram {
    /// Count per bucket (not cumulative); the last one is +Inf.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a request as in flight; [`Self::request_finished`] ends it.
    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one finished request (the other half of
    /// [`Self::request_started`]).
    pub fn request_finished(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let route = route.unwrap_or("-");
        let mut stats = self.requests.lock().unwrap();
        *stats
            .by_status
            .entry((route.to_string(), status))
            .or_default() += 1;
        stats
            .latency
            .entry(route.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Records a guest that failed to answer: `trap`, `memory`,
    /// `deadline`, `error`, `no_response` or `instantiate`.
    pub fn record_failure(&self, route: &str, kind: &'static str) {
        let mut stats = self.requests.lock().unwrap();
        *stats.failures.entry((route.to_string(), kind)).or_default() += 1;
    }

    /// Appends the server's metrics to `out`.
    pub fn render(&self, out: &mut Exposition) {
        let stats = self.requests.lock().unwrap();
        out.header(
            "burrow_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for ((route, status), n) in &stats.by_status {
            out.sample(
                "burrow_http_requests_total",
                &[("route", route), ("status", &status.to_string())],
                *n as f64,
            );
        }
        out.header(
            "burrow_http_request_duration_seconds",
            "histogram",
            "Time from request head to the end of the response body.",
        );
        for (route, h) in &stats.latency {
            let mut cumulative = 0;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                out.sample(
                    "burrow_http_request_duration_seconds_bucket",
                    &[("route", route), ("le", &le.to_string())],
                    cumulative as f64,
                );
            }
            out.sample(
                "burrow_http_request_duration_seconds_bucket",
                &[("route", route), ("le", "+Inf")],
                h.count as f64,
            );
            out.sample(
                "burrow_http_request_duration_seconds_sum",
                &[("route", route)],
                h.sum,
            );
            out.sample(
                "burrow_http_request_duration_seconds_count",
                &[("route", route)],
                h.count as f64,
            );
        }
        out.header(
            "burrow_guest_failures_total",
            "counter",
            "Guest calls that produced no response of their own, by route and kind (trap, memory, deadline, error, no_response, instantiate).",
        );
        for ((route, kind), n) in &stats.failures {
            out.sample(
                "burrow_guest_failures_total",
                &[("route", route), ("kind", kind)],
                *n as f64,
            );
        }
        drop(stats);
        out.gauge(
            "burrow_http_requests_in_flight",
            "Requests being served now.",
            self.in_flight.load(Ordering::Relaxed) as f64,
        );
    }
}

/// A Prometheus text-format document being written.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// `# HELP` and `# TYPE` lines for a metric family.
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample line with escaped label values.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A whole single-sample gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// A whole single-sample counter family.
    pub fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "counter", help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escapes_labels() {
        let m = Metrics::new();
        for _ in 0..4 {
            m.request_started();
        }
        m.request_finished(Some("api"), 200, Duration::from_millis(3));
        m.request_finished(Some("api"), 200, Duration::from_millis(700));
        m.request_finished(None, 404, Duration::from_micros(10));
        m.record_failure("api", "trap");
        let mut out = Exposition::new();
        m.render(&mut out);
        out.sample("x", &[("q", "a\"b\\c\nd")], 1.0);
        let text = out.finish();
        assert!(text.contains("burrow_http_requests_total{route=\"api\",status=\"200\"} 2\n"));
        assert!(text.contains("burrow_http_requests_total{route=\"-\",status=\"404\"} 1\n"));
        assert!(text.contains(
            "burrow_http_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 1\n"
        ));
        assert!(
            text.contains(
                "burrow_http_request_duration_seconds_bucket{route=\"api\",le=\"1\"} 2\n"
            )
        );
        assert!(text.contains("burrow_http_request_duration_seconds_count{route=\"api\"} 2\n"));
        assert!(text.contains("burrow_guest_failures_total{route=\"api\",kind=\"trap\"} 1\n"));
        assert!(text.contains("burrow_http_requests_in_flight 1\n"));
        assert!(text.contains(r#"x{q="a\"b\\c\nd"} 1"#));
        m.request_finished(Some("api"), 500, Duration::from_millis(1));
        let mut out = Exposition::new();
        m.render(&mut out);
        assert!(out.finish().contains("burrow_http_requests_in_flight 0\n"));
    }
}
