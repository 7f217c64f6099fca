//! Prometheus text metrics, kept by hand (a few counters, gauges and histograms behind
//! one mutex; a scrape renders them).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::pipeline::Timings;

const BUCKETS_S: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS_S.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS_S) {
            if secs <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        for (c, b) in self.counts.iter().zip(BUCKETS_S) {
            let _ = writeln!(out, "{name}_bucket{{{label},le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{label}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    request_latency: BTreeMap<String, Histogram>,
    stage_latency: BTreeMap<&'static str, Histogram>,
    tokens_generated: u64,
    decode_seconds: f64,
    last_tokens_per_s: f64,
    cache_hits: u64,
    cache_misses: u64,
    observations: u64,
    evictions: u64,
    rejected_overload: u64,
}

/// Gauges read at scrape time from the scene store and scheduler.
pub struct Gauges {
    pub cache_bytes: usize,
    pub cache_budget_bytes: usize,
    pub scenes_resident: usize,
    pub videos: usize,
    pub inflight: usize,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn request(&self, route: &str, status: u16, secs: f64) {
        self.with(|m| {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.request_latency.entry(route.to_string()).or_default().observe(secs);
        })
    }

    pub fn stages(&self, t: &Timings) {
        self.with(|m| {
            for (name, ms) in t.stages() {
                if ms > 0.0 {
                    m.stage_latency.entry(name).or_default().observe(ms / 1000.0);
                }
            }
        })
    }

    pub fn tokens(&self, generated: usize, decode_ms: f64) {
        self.with(|m| {
            m.tokens_generated += generated as u64;
            m.decode_seconds += decode_ms / 1000.0;
            if decode_ms > 0.0 {
                m.last_tokens_per_s = generated as f64 / (decode_ms / 1000.0);
            }
        })
    }

    pub fn cache_hit(&self, hit: bool) {
        self.with(|m| if hit { m.cache_hits += 1 } else { m.cache_misses += 1 })
    }

    /// A video observation started (a registration, or re-observing an evicted scene).
    pub fn observation(&self) {
        self.with(|m| m.observations += 1)
    }

    pub fn evicted(&self, n: usize) {
        self.with(|m| m.evictions += n as u64)
    }

    pub fn overloaded(&self) {
        self.with(|m| m.rejected_overload += 1)
    }

    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::new();
        self.with(|m| {
            o.push_str("# HELP loc3r_requests_total HTTP requests by route and status.\n# TYPE loc3r_requests_total counter\n");
            for ((route, status), n) in &m.requests {
                let _ = writeln!(o, "loc3r_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
            }
            o.push_str("# HELP loc3r_request_duration_seconds Request latency by route.\n# TYPE loc3r_request_duration_seconds histogram\n");
            for (route, h) in &m.request_latency {
                h.render(&mut o, "loc3r_request_duration_seconds", &format!("route=\"{route}\""));
            }
            o.push_str("# HELP loc3r_stage_duration_seconds Pipeline stage latency (the timings_ms keys).\n# TYPE loc3r_stage_duration_seconds histogram\n");
            for (stage, h) in &m.stage_latency {
                h.render(&mut o, "loc3r_stage_duration_seconds", &format!("stage=\"{stage}\""));
            }
            let tps = if m.decode_seconds > 0.0 { m.tokens_generated as f64 / m.decode_seconds } else { 0.0 };
            let _ = write!(
                o,
                "# HELP loc3r_generated_tokens_total Tokens generated.\n# TYPE loc3r_generated_tokens_total counter\nloc3r_generated_tokens_total {}\n\
                 # HELP loc3r_decode_seconds_total Time spent decoding tokens.\n# TYPE loc3r_decode_seconds_total counter\nloc3r_decode_seconds_total {}\n\
                 # HELP loc3r_tokens_per_second Decode throughput: all tokens over all decode time.\n# TYPE loc3r_tokens_per_second gauge\nloc3r_tokens_per_second {tps}\n\
                 # HELP loc3r_last_tokens_per_second Decode throughput of the last answer.\n# TYPE loc3r_last_tokens_per_second gauge\nloc3r_last_tokens_per_second {}\n\
                 # HELP loc3r_cache_hits_total Requests served from a resident scene.\n# TYPE loc3r_cache_hits_total counter\nloc3r_cache_hits_total {}\n\
                 # HELP loc3r_cache_misses_total Requests that had to (re-)observe a video.\n# TYPE loc3r_cache_misses_total counter\nloc3r_cache_misses_total {}\n\
                 # HELP loc3r_observations_total Video observations run (registrations and re-observations of evicted scenes).\n# TYPE loc3r_observations_total counter\nloc3r_observations_total {}\n\
                 # HELP loc3r_cache_evictions_total Scenes evicted to stay under --cache-mb.\n# TYPE loc3r_cache_evictions_total counter\nloc3r_cache_evictions_total {}\n\
                 # HELP loc3r_rejected_overload_total Requests refused with 429.\n# TYPE loc3r_rejected_overload_total counter\nloc3r_rejected_overload_total {}\n",
                m.tokens_generated, m.decode_seconds, m.last_tokens_per_s, m.cache_hits, m.cache_misses, m.observations, m.evictions, m.rejected_overload
            );
        });
        let _ = write!(
            o,
            "# HELP loc3r_cache_bytes Bytes held by resident scenes (KV prefixes, embeddings).\n# TYPE loc3r_cache_bytes gauge\nloc3r_cache_bytes {}\n\
             # HELP loc3r_cache_budget_bytes The --cache-mb budget.\n# TYPE loc3r_cache_budget_bytes gauge\nloc3r_cache_budget_bytes {}\n\
             # HELP loc3r_sessions Scenes resident in memory.\n# TYPE loc3r_sessions gauge\nloc3r_sessions {}\n\
             # HELP loc3r_videos Videos registered (resident or not).\n# TYPE loc3r_videos gauge\nloc3r_videos {}\n\
             # HELP loc3r_inflight Model jobs running or queued.\n# TYPE loc3r_inflight gauge\nloc3r_inflight {}\n",
            g.cache_bytes, g.cache_budget_bytes, g.scenes_resident, g.videos, g.inflight
        );
        o
    }
}
