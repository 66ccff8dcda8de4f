//! Prometheus metrics, in a registry owned by the operator. Error labels are small fixed
//! categories, never messages.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use socwarden_api::{Phase, SocAgent, Tier};
use std::collections::HashMap;

/// `--per-agent-metrics`: whether `/metrics` carries the series of every agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PerAgent {
    /// Every agent's while the fleet is under 2,000 agents; beyond, only those worth a look.
    #[default]
    Auto,
    On,
    /// Only those worth a look.
    Off,
}

/// The fleet size from which `auto` exports only the agents worth a look.
pub const PER_AGENT_FLEET: usize = 2_000;

/// Whether an agent's own series (drift score, token expiry) are exported: with `auto`, every
/// agent's under 2,000 agents; beyond (and with `off`) only the agents worth a look — a drift score
/// of 0.3 or more, a token expiring within 15 minutes or expired (the alerts fire at 0.7 and at 5
/// minutes, so they keep their series) — so that `/metrics` stays under 1 MiB at 10,000 agents.
pub fn shows_agent(mode: PerAgent, fleet: usize, score: Option<f64>, expires_in_secs: Option<i64>) -> bool {
    let all = match mode {
        PerAgent::On => true,
        PerAgent::Off => false,
        PerAgent::Auto => fleet < PER_AGENT_FLEET,
    };
    all || score.is_some_and(|s| s >= 0.3) || expires_in_secs.is_some_and(|left| left < 15 * 60)
}

#[derive(Clone)]
pub struct Metrics {
    /// See `shows_agent`.
    pub per_agent: PerAgent,
    pub registry: Registry,
    pub reconcile_duration: HistogramVec,
    pub reconcile_errors: IntCounterVec,
    pub agents: IntGaugeVec,
    pub tokens_issued: IntCounterVec,
    pub token_failures: IntCounterVec,
    pub credential_expiry: IntGaugeVec,
    pub pauses: IntCounterVec,
    pub containment_seconds: Histogram,
    pub kill_switch: IntGauge,
    pub malformed_objects: IntCounterVec,
    pub action_requests: IntCounterVec,
    pub approval_latency: Histogram,
    pub executions: IntCounterVec,
    pub pending_approvals: IntGauge,
    pub oldest_pending_seconds: prometheus::Gauge,
    pub webhook_duration: HistogramVec,
    pub promotions: IntCounterVec,
    pub drift_score: prometheus::GaugeVec,
    pub agent_paused: IntGaugeVec,
    pub drift_detections: IntCounterVec,
    pub audit_events: IntCounterVec,
    /// Agents' calls sent between replicas (see `peer`).
    pub peer_forwards: IntCounterVec,
    pub unrecorded_writes: prometheus::IntCounter,
    pub baseline_bounds: IntCounterVec,
    pub leadership_lost: prometheus::IntCounter,
    /// 1 while the API server answers its readiness check (see `run::api_reachability`).
    pub api_reachable: prometheus::IntGauge,
    /// MCP gateway: calls by tool and outcome, and how long each took.
    pub mcp_calls: IntCounterVec,
    pub mcp_call_seconds: HistogramVec,
    /// Notices to Notifier sinks, by notifier and outcome (see `notify`).
    pub notifications: IntCounterVec,
    /// Every family registered, also those without a series yet (the reference lists them).
    pub catalog: std::sync::Arc<Vec<Series>>,
}

/// A family of series, as `docs/reference/metrics.md` lists it.
#[derive(Clone, Debug)]
pub struct Series {
    /// Without the registry's prefix (`socwarden_`).
    pub name: String,
    pub kind: &'static str,
    pub labels: Vec<String>,
    pub help: String,
}

/// The families a collector registers, with their label names.
fn series(c: &dyn prometheus::core::Collector) -> Vec<Series> {
    use prometheus::proto::MetricType;
    let labels = c.desc().into_iter().map(|d| d.variable_labels.clone());
    c.collect()
        .into_iter()
        .zip(labels)
        .map(|(family, labels)| Series {
            name: family.name().to_string(),
            kind: match family.get_field_type() {
                MetricType::COUNTER => "counter",
                MetricType::GAUGE => "gauge",
                MetricType::HISTOGRAM => "histogram",
                MetricType::SUMMARY => "summary",
                MetricType::UNTYPED => "untyped",
            },
            labels,
            help: family.help().to_string(),
        })
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Declares series into one registry (prefix `socwarden_`) and lists each in the catalog: one
/// call per series, with its name, help, labels and buckets.
struct Declare {
    registry: Registry,
    catalog: Vec<Series>,
}

impl Declare {
    fn new() -> Self {
        Self { registry: Registry::new_custom(Some("socwarden".into()), None).expect("valid prefix"), catalog: vec![] }
    }

    fn add<C: prometheus::core::Collector + Clone + 'static>(&mut self, c: prometheus::Result<C>) -> C {
        let c = c.expect("a valid metric");
        self.catalog.extend(series(&c));
        self.registry.register(Box::new(c.clone())).expect("a unique metric");
        c
    }

    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn counter(&mut self, name: &str, help: &str) -> prometheus::IntCounter {
        self.add(prometheus::IntCounter::new(name, help))
    }

    fn gauges(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn histograms(&mut self, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
        self.add(HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.add(Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())))
    }
}

/// `c` with a series at zero for each of `values` of its one label.
fn zeroed(c: IntCounterVec, values: &[&str]) -> IntCounterVec {
    for v in values {
        c.with_label_values(&[v]);
    }
    c
}

/// The help of `audit_events_total`.
const AUDIT_EVENTS: &str = "Audit events at the sink: kept (an agent's call the API server sent to this replica, queued to be judged; counted once, by the replica that received it), dropped (beyond the intake's capacity, see intake.rs), unjudged (writes or refusals beyond twice the capacity: their agent is contained unjudged), or payloads malformed";

/// The help of `peer_calls_total`.
const PEER_CALLS: &str = "Agents' calls a replica received for a shard it does not hold and sent to the shard's holder (forwarded), could not send within the lease plus 2 s (failed: the sink answered 503 and the API server sends the batch again), a holder took from a peer (received), or bodies refused for a bad signature or age (refused)";

/// Buckets of a reconcile (seconds).
const CALL: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

impl Metrics {
    /// Every series, declared once.
    pub fn new() -> Self {
        let mut d = Declare::new();
        Self {
            per_agent: PerAgent::default(),
            reconcile_duration: d.histograms("reconcile_duration_seconds", "Time spent in one reconcile", &["controller"], CALL),
            reconcile_errors: d.counters("reconcile_errors_total", "Failed reconciles by controller and error category", &["controller", "category"]),
            agents: d.gauges("agents", "SocAgents by effective tier and phase", &["tier", "phase"]),
            tokens_issued: d.counters("tokens_issued_total", "Agent tokens issued, by reason", &["reason"]),
            token_failures: d.counters("token_rotation_failures_total", "Failed attempts to issue or rotate an agent token", &["category"]),
            credential_expiry: d.gauges("credential_expiry_timestamp_seconds", "When each agent's current token expires (Unix time)", &["namespace", "agent"]),
            pauses: d.counters("pauses_total", "Agents paused, by reason", &["reason"]),
            containment_seconds: d.histogram(
                "containment_duration_seconds",
                "From the reconcile that saw a pause to RoleBindings and token Secret deleted",
                &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            kill_switch: d.gauge("kill_switch_active", "1 while an AutonomyPolicy has killSwitch: true"),
            malformed_objects: d.counters("malformed_objects_total", "Objects that could not be decoded and were skipped", &["kind"]),
            action_requests: d.counters("action_requests_total", "ActionRequests decided, by action and decision", &["action", "decision"]),
            approval_latency: d.histogram(
                "approval_latency_seconds",
                "From an ActionRequest's creation to its approval or denial",
                &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0],
            ),
            executions: d.counters("executions_total", "Executions of approved actions, by result (Executed, ExecutionFailed, RolledBack)", &["result"]),
            pending_approvals: d.gauge("pending_approvals", "ActionRequests waiting for approval"),
            oldest_pending_seconds: d.add(prometheus::Gauge::new(
                "oldest_pending_approval_age_seconds",
                "Age of the oldest ActionRequest waiting for approval",
            )),
            webhook_duration: d.histograms(
                "webhook_duration_seconds",
                "Time to answer one admission review",
                &["path", "allowed"],
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
            ),
            promotions: d.counters("tier_changes_total", "Effective tier changes, by direction", &["direction"]),
            drift_score: d.add(prometheus::GaugeVec::new(
                Opts::new("drift_score", "Latest drift score of each agent, in [0, 1]"),
                &["namespace", "agent"],
            )),
            agent_paused: d.gauges("agent_paused", "1 for each paused agent, with the reason (only paused agents have a series)", &["namespace", "agent", "reason"]),
            drift_detections: d.counters("drift_detections_total", "Drift assessments that reached the threshold, by what followed", &["outcome"]),
            // Every result from the start, so that an alert's increase() sees the first loss.
            audit_events: zeroed(d.counters("audit_events_total", AUDIT_EVENTS, &["result"]), &["kept", "dropped", "unjudged", "malformed"]),
            peer_forwards: zeroed(d.counters("peer_calls_total", PEER_CALLS, &["result"]), &["forwarded", "failed", "received", "refused"]),
            unrecorded_writes: d.counter(
                "unrecorded_writes_total",
                "Writes by agents that no approved request covered (each contains its agent with onDrift Pause)",
            ),
            baseline_bounds: d.counters(
                "baseline_bounds_reached_total",
                "Baseline lists that filled while learning (novelty falls back to a coarser key), by list",
                &["list"],
            ),
            leadership_lost: d.counter(
                "leadership_lost_total",
                "Times this replica lost a shard's lease (it stops acting for its agents and stands by to hold it again)",
            ),
            api_reachable: d.gauge("api_reachable", "1 while the API server answers its readiness check (/readyz of the operator follows it)"),
            mcp_calls: d.counters(
                "mcp_calls_total",
                "MCP gateway calls, by tool (a catalog action, warden_status, warden_request, (unknown), or (none) for a caller refused before any tool) and outcome (ok, error, pending, refused, unauthenticated, forbidden, unavailable)",
                &["tool", "outcome"],
            ),
            mcp_call_seconds: d.histograms(
                "mcp_call_duration_seconds",
                "Time to answer one MCP request, by method",
                &["method"],
                &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            notifications: d.counters(
                "notifications_total",
                "Notices to Notifier sinks, by notifier and outcome (delivered, retried, dead: given up after the last retry, dropped: the queue was full)",
                &["notifier", "outcome"],
            ),
            catalog: std::sync::Arc::new(d.catalog),
            registry: d.registry,
        }
    }

    /// Recomputes the approval backlog from the requests the operator sees.
    pub fn refresh_requests(&self, requests: &[std::sync::Arc<socwarden_api::ActionRequest>], now: jiff::Timestamp) {
        let pending: Vec<_> = requests
            .iter()
            .filter(|r| r.status.as_ref().and_then(|s| s.decision) == Some(socwarden_api::Decision::Pending))
            .collect();
        self.pending_approvals.set(pending.len() as i64);
        let oldest = pending
            .iter()
            .filter_map(|r| r.metadata.creation_timestamp.as_ref())
            .map(|t| now.duration_since(t.0).as_secs_f64())
            .fold(0.0_f64, f64::max);
        self.oldest_pending_seconds.set(oldest);
    }

    /// Recomputes the per-state gauges from the agents the operator sees (at scrape time, so they
    /// can never drift from the truth).
    pub fn refresh(&self, agents: &[std::sync::Arc<SocAgent>]) {
        let mut counts: HashMap<(Tier, Phase), i64> = HashMap::new();
        self.agent_paused.reset();
        for a in agents {
            if let Some(p) = a.status.as_ref().and_then(|s| s.pause.as_ref()) {
                let (ns, name) =
                    (a.metadata.namespace.as_deref().unwrap_or(""), a.metadata.name.as_deref().unwrap_or(""));
                self.agent_paused.with_label_values(&[ns, name, &p.reason]).set(1);
            }
            let s = a.status.as_ref();
            let tier = s.and_then(|s| s.effective_tier).unwrap_or(a.spec.tier);
            let phase = s.and_then(|s| s.phase).unwrap_or(Phase::Pending);
            *counts.entry((tier, phase)).or_default() += 1;
        }
        for tier in Tier::ALL {
            for phase in [Phase::Pending, Phase::Active, Phase::Paused, Phase::Error] {
                let n = counts.get(&(tier, phase)).copied().unwrap_or(0);
                self.agents.with_label_values(&[tier.as_str(), phase.as_str()]).set(n);
            }
        }
    }

    /// The exposition, with the per-agent series `shows_agent` keeps for a fleet of `fleet` agents.
    pub fn encode(&self, fleet: usize, now_secs: i64) -> String {
        let mut families = self.registry.gather();
        for f in families.iter_mut() {
            let keep: fn(&prometheus::proto::Metric, PerAgent, usize, i64) -> bool = match f.name() {
                "socwarden_drift_score" => {
                    |m, mode, fleet, _| shows_agent(mode, fleet, Some(m.get_gauge().get_value()), None)
                }
                "socwarden_credential_expiry_timestamp_seconds" => {
                    |m, mode, fleet, now| shows_agent(mode, fleet, None, Some(m.get_gauge().get_value() as i64 - now))
                }
                _ => continue,
            };
            let kept: Vec<_> =
                f.take_metric().into_iter().filter(|m| keep(m, self.per_agent, fleet, now_secs)).collect();
            f.set_metric(kept);
        }
        families.retain(|f| !f.get_metric().is_empty());
        let mut buf = Vec::new();
        TextEncoder::new().encode(&families, &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("utf-8 metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_agents_have_series() {
        use PerAgent::*;
        for (mode, fleet, score, left, expected) in [
            (Auto, 1_999, Some(0.0), None, true),
            (Auto, 2_000, Some(0.0), None, false),
            (Auto, 10_000, Some(0.29), None, false),
            (Auto, 10_000, Some(0.3), None, true),
            (Auto, 10_000, None, Some(3_600), false),
            (Auto, 10_000, None, Some(899), true),
            (Auto, 10_000, None, Some(-5), true),
            (On, 10_000, Some(0.0), None, true),
            (Off, 10, Some(0.0), None, false),
            (Off, 10, Some(0.9), None, true),
        ] {
            assert_eq!(shows_agent(mode, fleet, score, left), expected, "{mode:?} {fleet} {score:?} {left:?}");
        }
    }

    #[test]
    fn a_large_fleet_exports_only_the_agents_worth_a_look() {
        let m = Metrics::new();
        let now = 1_000_000;
        m.drift_score.with_label_values(&["a", "calm"]).set(0.1);
        m.drift_score.with_label_values(&["a", "odd"]).set(0.5);
        m.credential_expiry.with_label_values(&["a", "calm"]).set(now + 3_600);
        m.credential_expiry.with_label_values(&["a", "late"]).set(now + 60);
        let large = m.encode(10_000, now);
        assert!(large.contains(r#"socwarden_drift_score{agent="odd""#), "{large}");
        assert!(!large.contains(r#"socwarden_drift_score{agent="calm""#), "{large}");
        assert!(large.contains(r#"socwarden_credential_expiry_timestamp_seconds{agent="late""#), "{large}");
        assert!(!large.contains(r#"socwarden_credential_expiry_timestamp_seconds{agent="calm""#), "{large}");
        let small = m.encode(10, now);
        assert_eq!(small.matches("socwarden_drift_score{").count(), 2, "{small}");
        assert_eq!(small.matches("socwarden_credential_expiry_timestamp_seconds{").count(), 2, "{small}");
    }
}
