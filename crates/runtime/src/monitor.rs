//! Keeps one behaviour model per agent in memory, feeds it the observations from the audit sink
//! and the action gate, and wakes the agent's reconcile when it must act (contain), report (a
//! change of assessment) or persist (the learned baseline). The judgement itself is `drift`.

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use socwarden_api::{BaselineSpec, BaselineStatus, DriftStatus, OnDrift, SocAgent};
use socwarden_core::admission::identity::CredentialId;
use socwarden_core::behaviour::drift::{self, Assessment, Model, Observation, Verdict};
use socwarden_core::behaviour::records::{self, Access};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use socwarden_core::admission::identity::AgentKey;

/// A decision to contain, waiting for the agent's reconcile to carry it out.
#[derive(Clone, Debug)]
pub struct Trigger {
    /// When the evidence arrived (for the containment latency).
    pub received: Instant,
    pub assessment: Assessment,
    /// When it was judged.
    pub at: Timestamp,
    /// The fast path (`controller::agent::contain_now`) revoked the credentials already.
    pub revoked: bool,
}

struct Entry {
    model: Model,
    learning: Duration,
    sensitivity: drift::Sensitivity,
    pause_on_drift: bool,
    /// Paused for any reason: nothing is judged (its calls are refused by design).
    paused: bool,
    shown: Option<(Assessment, Timestamp)>,
    trigger: Option<Trigger>,
    checkpoint: Option<(drift::Baseline, Timestamp)>,
    last_wake: Option<Instant>,
    /// Something worth reporting has not reached the status yet (the wake was held back).
    dirty: bool,
    /// Signals below the threshold, kept until the status has shown them (the window moves on).
    report: Option<(Assessment, Timestamp)>,
    /// Configured from the agent's spec at least once.
    configured: bool,
    /// The leading replica considered the baseline the agent's DriftReport kept (see `configure`).
    seeded: bool,
}

impl Entry {
    fn new() -> Self {
        Self {
            model: Model::default(),
            learning: Duration::from_secs(24 * 3600),
            sensitivity: Default::default(),
            pause_on_drift: true,
            paused: false,
            shown: None,
            trigger: None,
            checkpoint: None,
            last_wake: None,
            dirty: false,
            report: None,
            configured: false,
            seeded: false,
        }
    }
}

fn pending_containment(e: &Entry) -> bool {
    e.trigger.as_ref().is_some_and(|t| !t.revoked)
}

/// What the reconcile of one agent needs from the monitor.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub drift: Option<DriftStatus>,
    pub baseline: Option<BaselineStatus>,
    /// Lists of the baseline that filled (see `drift::bounds`).
    pub bounds: Vec<String>,
    pub trigger: Option<Trigger>,
}

pub struct Monitor {
    entries: Mutex<HashMap<AgentKey, Entry>>,
    /// Wakes go out only from the holder of the agent's shard (another replica keeps its model warm
    /// and quiet).
    shards: std::sync::Arc<crate::shard::Shards>,
    wake: mpsc::UnboundedSender<ObjectRef<SocAgent>>,
    /// Containment goes out at once, ahead of every queued reconcile (see `contain_now`).
    contain: mpsc::UnboundedSender<AgentKey>,
    metrics: crate::metrics::Metrics,
}

/// The receiving ends of the monitor's wakes: agents to reconcile, agents to contain now.
pub struct Wakes {
    pub reconcile: mpsc::UnboundedReceiver<ObjectRef<SocAgent>>,
    pub contain: mpsc::UnboundedReceiver<AgentKey>,
}

/// How often an unchanged assessment is refreshed in the status at most.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// The least time between two wakes of one agent for reporting (containment is never delayed).
const WAKE_GAP: Duration = Duration::from_secs(5);

impl Monitor {
    pub fn new(metrics: crate::metrics::Metrics, shards: std::sync::Arc<crate::shard::Shards>) -> (Self, Wakes) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (contain, contain_rx) = mpsc::unbounded_channel();
        let monitor = Self { entries: Mutex::new(HashMap::new()), shards, wake: tx, contain, metrics };
        (monitor, Wakes { reconcile: rx, contain: contain_rx })
    }

    /// Brings the model in line with the agent's spec (the leader's reconcile) and, the first time
    /// this replica leads it (after a restart, or a takeover), with the baseline its DriftReport
    /// kept: the leader's learning replaces what a standby learned from the calls it received,
    /// and the recent window — the standby's own observations — stays to be judged.
    pub fn configure(&self, key: &AgentKey, spec: &BaselineSpec, paused: bool, kept: Option<&BaselineStatus>) {
        let mut entries = self.entries();
        let e = entries.entry(key.clone()).or_insert_with(Entry::new);
        set_spec(e, spec, paused);
        if e.seeded {
            return;
        }
        e.seeded = true;
        if let Some(k) = kept {
            e.model.since = k.since.parse().ok();
            e.model.learned_at = k.learned_at.as_deref().and_then(|t| t.parse().ok());
            e.model.baseline = k.counts.clone();
            e.checkpoint = e.model.since.map(|s| (k.counts.clone(), s));
        }
    }

    /// Configures the model of an agent that no reconcile of this replica configures (a
    /// standby's, or right after a start) from its spec and whether it is paused, as the cache
    /// shows them: a standby learns and judges with the agent's own learning period and
    /// sensitivity, and judges nothing of a paused agent.
    pub fn configure_spec(&self, key: &AgentKey, spec: &BaselineSpec, paused: bool) {
        let mut entries = self.entries();
        let e = entries.entry(key.clone()).or_insert_with(Entry::new);
        if !e.seeded {
            set_spec(e, spec, paused);
        }
    }

    /// A shard was lost: the next time this replica holds it, the models of its agents (`lost`)
    /// are seeded again from what the DriftReports kept (the holder meanwhile learned from every
    /// replica's calls).
    pub fn unseed(&self, lost: impl Fn(&AgentKey) -> bool) {
        for (k, e) in self.entries().iter_mut() {
            if lost(k) {
                e.seeded = false;
            }
        }
    }

    /// The entries, also after a panic while they were held (a poisoned lock would otherwise stop
    /// every later judgement, and with it containment).
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<AgentKey, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this replica holds the agent's shard: only the holder's judgements are metrics
    /// (another replica's model sees only the calls it received, and two pods counting one event
    /// would double every alert).
    fn leads(&self, key: &AgentKey) -> bool {
        self.shards.owns(&key.0, &key.1)
    }

    fn score(&self, key: &AgentKey, score: f64) {
        if self.leads(key) {
            self.metrics.drift_score.with_label_values(&[&key.0, &key.1]).set(score);
        } else {
            let _ = self.metrics.drift_score.remove_label_values(&[&key.0, &key.1]);
        }
    }

    /// Asks for the agent's reconcile (on the replica that holds its shard).
    pub fn wake(&self, key: &AgentKey) {
        if self.leads(key) {
            let _ = self.wake.send(ObjectRef::new(&key.1).within(&key.0));
        }
    }

    /// Decides to contain: the trigger is set, the credentials go at once (`contain_now`), and the
    /// reconcile (status, workload, Events) follows.
    fn trip(&self, key: &AgentKey, e: &mut Entry, assessment: Assessment, received: Instant, now: Timestamp) {
        e.trigger = Some(Trigger { received, assessment, at: now, revoked: false });
        e.last_wake = Some(Instant::now());
        if self.leads(key) {
            self.metrics.drift_detections.with_label_values(&["pause"]).inc();
            let _ = self.contain.send(key.clone());
        }
        self.wake(key);
    }

    /// The fast path revoked the agent's credentials: whether it was still to be contained.
    pub fn revoked(&self, key: &AgentKey) -> Option<Trigger> {
        let mut entries = self.entries();
        let t = entries.get_mut(key)?.trigger.as_mut().filter(|t| !t.revoked)?;
        t.revoked = true;
        Some(t.clone())
    }

    /// Whether a trigger waits for containment (the fast path checks it under the agent's lock).
    pub fn triggered(&self, key: &AgentKey) -> bool {
        self.entries().get(key).is_some_and(pending_containment)
    }

    /// Of `keys`, those whose containment is decided and not yet done: one look under the lock.
    pub fn awaiting_containment<'a>(&self, keys: impl IntoIterator<Item = &'a AgentKey>) -> Vec<AgentKey> {
        let entries = self.entries();
        keys.into_iter().filter(|k| entries.get(*k).is_some_and(pending_containment)).cloned().collect()
    }

    pub fn forget(&self, key: &AgentKey) {
        self.entries().remove(key);
        let _ = self.metrics.drift_score.remove_label_values(&[&key.0, &key.1]);
    }

    /// Takes observations for several agents (one audit batch) and judges each agent once.
    pub fn observe(&self, batch: Vec<(AgentKey, Observation)>, received: Instant, now: Timestamp) {
        let mut entries = self.entries();
        let mut touched: Vec<AgentKey> = Vec::new();
        for (key, o) in batch {
            let e = entries.entry(key.clone()).or_insert_with(Entry::new);
            if e.paused {
                continue;
            }
            for bound in e.model.observe(o, e.learning) {
                if self.leads(&key) {
                    self.metrics.baseline_bounds.with_label_values(&[bound.as_str()]).inc();
                }
            }
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        for key in touched {
            // Decided to contain already: nothing more to judge until it is contained.
            if let Some(e) = entries.get_mut(&key).filter(|e| e.trigger.is_none()) {
                self.judge(&key, e, received, now);
            }
        }
    }

    /// Whether the agent is paused (its calls are refused by design; nothing is judged).
    pub fn paused(&self, key: &AgentKey) -> bool {
        self.entries().get(key).is_some_and(|e| e.paused)
    }

    /// A write no approved request covers: contained at once with onDrift Pause, whatever the
    /// sensitivity and the statistics; reported with onDrift Alert. The assessment names the
    /// token that made the write.
    pub fn unrecorded(&self, key: &AgentKey, w: &Access, received: Instant, now: Timestamp) {
        let certain = Certain { observed: records::unrecorded(w), credentials: w.credential.into_iter().collect() };
        self.certain(key, certain, Some(&self.metrics.unrecorded_writes), received, now);
    }

    /// Writes or refusals the sink had no room to judge (`intake::admit`), made with `credentials`:
    /// treated as an unrecorded write, since one of them may be.
    pub fn unjudged(
        &self,
        key: &AgentKey,
        calls: usize,
        credentials: &[CredentialId],
        received: Instant,
        now: Timestamp,
    ) {
        let certain = Certain { observed: records::unjudged(calls), credentials: credentials.to_vec() };
        self.certain(key, certain, None, received, now);
    }

    /// Contains (or, with onDrift Alert, reports) on a certain signal, whatever the statistics;
    /// `count` counts it unless the agent is paused.
    fn certain(
        &self,
        key: &AgentKey,
        certain: Certain,
        count: Option<&prometheus::IntCounter>,
        received: Instant,
        now: Timestamp,
    ) {
        let mut entries = self.entries();
        let e = entries.entry(key.clone()).or_insert_with(Entry::new);
        if e.paused {
            return;
        }
        if let Some(c) = count.filter(|_| self.leads(key)) {
            c.inc();
        }
        if e.trigger.is_some() {
            return;
        }
        let signal = drift::Signal {
            signal: drift::SignalKind::Unrecorded,
            observed: certain.observed,
            expected: "every write covered by an approved request".into(),
            score: 1.0,
        };
        let a = Assessment {
            state: drift::State::Drifting,
            score: 1.0,
            signals: vec![signal],
            credentials: certain.credentials,
        };
        self.score(key, a.score);
        e.shown = Some((a.clone(), now));
        if e.pause_on_drift {
            self.trip(key, e, a, received, now);
        } else {
            e.report = Some((a, now));
            e.last_wake = Some(Instant::now());
            self.wake(key);
        }
    }

    /// Moves every window on, closes learning periods, notices silence.
    pub fn tick(&self, now: Timestamp) {
        let mut entries = self.entries();
        let received = Instant::now();
        for (key, e) in entries.iter_mut() {
            if !e.paused && e.trigger.is_none() {
                self.judge(key, e, received, now);
            }
        }
    }

    fn judge(&self, key: &AgentKey, e: &mut Entry, received: Instant, now: Timestamp) {
        let was_learning = e.model.learned_at.is_none();
        e.model.advance(now, e.learning);
        let (a, verdict) = drift::judge(e.model.assess(now, e.learning), e.sensitivity, e.pause_on_drift);
        self.score(key, a.score);
        let mut wake = false;
        if verdict == Verdict::Pause && e.trigger.is_none() {
            self.trip(key, e, a.clone(), received, now);
        }
        if verdict == Verdict::Report && a.state != drift::State::Drifting {
            let new = e.report.as_ref().or(e.shown.as_ref()).is_none_or(|(s, _)| signal_names(s) != signal_names(&a));
            if new && !a.signals.is_empty() {
                e.report = Some((a.clone(), now));
                self.wake(key);
                e.last_wake = Some(Instant::now());
            }
        }
        let changed = match &e.shown {
            None => true,
            Some((s, at)) => {
                s.state != a.state
                    || (s.score - a.score).abs() >= 0.05
                    || signal_names(s) != signal_names(&a)
                    || now.duration_since(*at).as_secs_f64() >= REPORT_EVERY.as_secs_f64()
            }
        };
        if changed {
            e.shown = Some((a, now));
            wake = true;
        }
        // Persist the baseline when learning ends, and now and then while it goes on.
        let every = (e.learning / 10).max(Duration::from_secs(30));
        let due = match &e.checkpoint {
            None => e.model.since.is_some(),
            Some((_, at)) => now.duration_since(*at).as_secs_f64() >= every.as_secs_f64(),
        };
        if (was_learning && e.model.learned_at.is_some()) || (e.model.learned_at.is_none() && due) {
            e.checkpoint = Some((e.model.baseline.clone(), now));
            wake = true;
        }
        e.dirty |= wake;
        if e.dirty && e.last_wake.is_none_or(|w| w.elapsed() >= WAKE_GAP) {
            e.last_wake = Some(Instant::now());
            e.dirty = false;
            self.wake(key);
        }
    }

    pub fn view(&self, key: &AgentKey) -> View {
        let entries = self.entries();
        let Some(e) = entries.get(key) else { return View::default() };
        let threshold = e.sensitivity.threshold();
        View {
            drift: e
                .trigger
                .as_ref()
                .map(|t| (&t.assessment, &t.at))
                .or(e.report.as_ref().or(e.shown.as_ref()).map(|(a, at)| (a, at)))
                .map(|(a, at)| DriftStatus {
                    state: a.state,
                    score: a.score,
                    threshold,
                    signals: a.signals.clone(),
                    credentials: a.credentials.iter().map(ToString::to_string).collect(),
                    evaluated_at: at.to_string(),
                }),
            baseline: e.model.since.map(|since| BaselineStatus {
                since: since.to_string(),
                learned_at: e.model.learned_at.map(|t| t.to_string()),
                counts: e.checkpoint.as_ref().map(|(b, _)| b.clone()).unwrap_or_default(),
            }),
            bounds: drift::bounds(&e.model.baseline),
            trigger: e.trigger.clone(),
        }
    }

    /// Whether the agent's model was configured by this replica's reconcile while leading (its
    /// kept baseline, if any, is in).
    pub fn knows(&self, key: &AgentKey) -> bool {
        self.entries().get(key).is_some_and(|e| e.seeded)
    }

    /// The status showed the reported signals.
    pub fn reported(&self, key: &AgentKey) {
        if let Some(e) = self.entries().get_mut(key) {
            e.report = None;
        }
    }

    /// The containment was recorded: forget the trigger, and show what contained the agent.
    pub fn contained(&self, key: &AgentKey) {
        if let Some(e) = self.entries().get_mut(key) {
            if let Some(t) = e.trigger.take() {
                e.shown = Some((t.assessment, t.at));
            }
            e.report = None;
            e.paused = true;
        }
    }

    /// A resume was approved: judge afresh from now on (the evidence that paused it is not new).
    pub fn resumed(&self, key: &AgentKey) {
        if let Some(e) = self.entries().get_mut(key) {
            e.model.recent.clear();
            e.trigger = None;
            e.paused = false;
            e.shown = None;
        }
    }
}

fn set_spec(e: &mut Entry, spec: &BaselineSpec, paused: bool) {
    e.learning = socwarden_api::duration::parse(&spec.learning_period).unwrap_or(Duration::from_secs(24 * 3600));
    e.sensitivity = spec.sensitivity;
    e.pause_on_drift = spec.on_drift == OnDrift::Pause;
    e.paused = paused;
    e.configured = true;
}

/// A signal that contains whatever the statistics say, and the tokens of the calls behind it.
struct Certain {
    observed: String,
    credentials: Vec<CredentialId>,
}

fn signal_names(a: &Assessment) -> Vec<&str> {
    a.signals.iter().map(|s| s.signal.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_core::behaviour::drift::Sensitivity;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    /// A monitor of the one replica, which holds every agent's shard.
    fn leading() -> (Monitor, Wakes) {
        Monitor::new(crate::metrics::Metrics::new(), std::sync::Arc::new(crate::shard::Shards::single()))
    }

    #[test]
    fn contains_once_persists_the_baseline_and_ignores_a_paused_agent() {
        let (m, wakes) = leading();
        let mut rx = wakes.reconcile;
        let key = ("agents".to_string(), "bot".to_string());
        let spec =
            BaselineSpec { learning_period: "100s".into(), sensitivity: Sensitivity::Medium, on_drift: OnDrift::Pause };
        m.configure(&key, &spec, false, None);
        for s in (0..100).step_by(5) {
            m.observe(vec![(key.clone(), Observation::api(t(s), "list", "pods", 200))], Instant::now(), t(s));
        }
        m.tick(t(101));
        let v = m.view(&key);
        assert!(v.baseline.as_ref().unwrap().learned_at.is_some());
        assert_eq!(v.baseline.unwrap().counts.api["list pods"], 20);
        while rx.try_recv().is_ok() {}

        let burst: Vec<_> =
            (0..6).map(|i| (key.clone(), Observation::api(t(102 + i), "get", "secrets", 403))).collect();
        m.observe(burst.clone(), Instant::now(), t(108));
        assert!(m.view(&key).trigger.is_some());
        assert!(rx.try_recv().is_ok(), "the agent is woken to contain");
        // The batch that decided it waits for the revocation (`intake::contained`), not for others.
        let other = ("agents".to_string(), "quiet".to_string());
        assert_eq!(m.awaiting_containment([&key, &other]), vec![key.clone()]);
        assert!(m.revoked(&key).is_some());
        assert!(m.awaiting_containment([&key]).is_empty(), "revoked: nothing to wait for");
        assert!(m.view(&key).trigger.is_some(), "the reconcile still records the pause");
        m.observe(burst.clone(), Instant::now(), t(108));
        m.contained(&key);
        assert!(m.view(&key).trigger.is_none());
        // While paused, its refused calls are not evidence of anything.
        m.observe(burst, Instant::now(), t(109));
        assert!(m.view(&key).trigger.is_none());
        m.resumed(&key);
        m.tick(t(110));
        assert!(m.view(&key).trigger.is_none());
    }

    #[test]
    fn writes_the_sink_had_no_room_to_judge_contain_their_agent_at_once() {
        let (m, wakes) = leading();
        let mut contain = wakes.contain;
        let key = ("agents".to_string(), "bot".to_string());
        let spec = BaselineSpec { learning_period: "24h".into(), ..Default::default() };
        m.configure(&key, &spec, false, None);
        // Still learning, no statistics against it: only the unjudged writes.
        let id = CredentialId::parse("JTI=0f8fad5b-d9cb-469f-a165-70867728950e").unwrap();
        m.unjudged(&key, 3, &[id], Instant::now(), t(1));
        let trigger = m.view(&key).trigger.expect("contained");
        let signal = &trigger.assessment.signals[0];
        assert_eq!(signal.signal, drift::SignalKind::Unrecorded);
        assert!(signal.observed.starts_with("3 write(s) or refused call(s) not judged"), "{}", signal.observed);
        assert_eq!(trigger.assessment.credentials, vec![id], "the tokens of the calls not judged");
        let shown = m.view(&key).drift.expect("shown");
        assert_eq!(shown.credentials, vec!["JTI=0f8fad5b-d9cb-469f-a165-70867728950e".to_string()]);
        assert_eq!(contain.try_recv().ok(), Some(key.clone()), "at once, ahead of every reconcile");
        assert_eq!(m.metrics.unrecorded_writes.get(), 0, "no write was found unrecorded");
        // A paused agent is not contained again.
        m.contained(&key);
        m.configure(&key, &spec, true, None);
        m.unjudged(&key, 1, &[], Instant::now(), t(2));
        assert!(m.view(&key).trigger.is_none());
    }

    #[test]
    fn an_unrecorded_write_contains_naming_the_token_that_made_it() {
        let (m, _wakes) = leading();
        let key = ("agents".to_string(), "bot".to_string());
        m.configure(&key, &BaselineSpec { learning_period: "24h".into(), ..Default::default() }, false, None);
        let id = CredentialId::parse("JTI=0f8fad5b-d9cb-469f-a165-70867728950e");
        let w = Access {
            verb: "delete".into(),
            resource: "pods".into(),
            namespace: "web".into(),
            name: "p".into(),
            code: 200,
            credential: id,
            ..Default::default()
        };
        m.unrecorded(&key, &w, Instant::now(), t(1));
        let v = m.view(&key);
        assert_eq!(v.trigger.expect("contained").assessment.credentials, id.into_iter().collect::<Vec<_>>());
        assert_eq!(v.drift.unwrap().credentials, vec!["JTI=0f8fad5b-d9cb-469f-a165-70867728950e".to_string()]);
        // Shown after the containment too (the DriftReport keeps naming it).
        m.contained(&key);
        assert_eq!(m.view(&key).drift.unwrap().credentials.len(), 1);
    }

    #[test]
    fn statistics_name_the_tokens_of_the_calls_judged() {
        let (m, _wakes) = leading();
        let key = ("agents".to_string(), "bot".to_string());
        let spec =
            BaselineSpec { learning_period: "100s".into(), sensitivity: Sensitivity::Medium, on_drift: OnDrift::Pause };
        m.configure(&key, &spec, false, None);
        let old = CredentialId::from_jti("11111111-1111-4111-8111-111111111111");
        let new = CredentialId::from_jti("22222222-2222-4222-8222-222222222222");
        for s in (0..100).step_by(5) {
            let o = Observation::api(t(s), "list", "pods", 200).with_credential(old);
            m.observe(vec![(key.clone(), o)], Instant::now(), t(s));
        }
        m.tick(t(101));
        // A burst of 403s, most with the rotated token; of the calls before the window judged
        // (the first, at 102), no token is named.
        let burst: Vec<_> = (0..6)
            .map(|i| {
                let o = Observation::api(t(102 + i), "get", "secrets", 403);
                let id = match i {
                    0 => CredentialId::from_jti("33333333-3333-4333-8333-333333333333"),
                    1 => old,
                    _ => new,
                };
                (key.clone(), o.with_credential(id))
            })
            .collect();
        m.observe(burst, Instant::now(), t(108));
        let trigger = m.view(&key).trigger.expect("contained");
        assert_eq!(trigger.assessment.credentials, vec![new.unwrap(), old.unwrap()], "most recent first");
    }

    #[test]
    fn a_restart_keeps_the_learned_baseline() {
        let (m, _wakes) = leading();
        let key = ("agents".to_string(), "bot".to_string());
        let mut counts = drift::Baseline { seconds: 100.0, ..Default::default() };
        counts.api.insert("list pods".into(), 20);
        let kept = BaselineStatus { since: t(0).to_string(), learned_at: Some(t(100).to_string()), counts };
        let spec = BaselineSpec { learning_period: "100s".into(), ..Default::default() };
        m.configure(&key, &spec, false, Some(&kept));
        m.observe(vec![(key.clone(), Observation::api(t(200), "list", "pods", 200))], Instant::now(), t(200));
        let v = m.view(&key);
        assert_eq!(v.drift.unwrap().state, drift::State::Normal);
        assert_eq!(v.baseline.unwrap().learned_at, Some(t(100).to_string()));
    }

    #[test]
    fn a_standby_judges_with_the_agents_settings_quietly_and_its_trigger_acts_once_it_leads() {
        let shards = std::sync::Arc::new(crate::shard::Shards::new(1));
        let (m, wakes) = Monitor::new(crate::metrics::Metrics::new(), shards.clone());
        let (mut rx, mut contain) = (wakes.reconcile, wakes.contain);
        let key = ("agents".to_string(), "bot".to_string());
        let spec =
            BaselineSpec { learning_period: "100s".into(), sensitivity: Sensitivity::Medium, on_drift: OnDrift::Pause };
        // No reconcile here: the calls it received configure the model from the agent's spec.
        m.configure_spec(&key, &spec, false);
        assert!(!m.knows(&key), "not seeded from the DriftReport: no reconcile of this replica did");
        for s in (0..100).step_by(5) {
            m.observe(vec![(key.clone(), Observation::api(t(s), "list", "pods", 200))], Instant::now(), t(s));
        }
        m.tick(t(101));
        let burst: Vec<_> =
            (0..6).map(|i| (key.clone(), Observation::api(t(102 + i), "get", "secrets", 403))).collect();
        m.observe(burst, Instant::now(), t(108));
        assert!(m.view(&key).trigger.is_some(), "judged with the agent's 100 s learning period, not the default day");
        assert!(rx.try_recv().is_err() && contain.try_recv().is_err(), "a standby acts on nothing");
        assert_eq!(m.metrics.drift_detections.with_label_values(&["pause"]).get(), 0, "nor counts it");
        let series = prometheus::core::Collector::collect(&m.metrics.drift_score);
        assert!(series.iter().all(|f| f.get_metric().is_empty()), "no drift score from a standby: {series:?}");
        // It takes over: the reconcile seeds the model from the leader's kept baseline (which
        // replaces what the standby learned) and the trigger is still there to act on.
        shards.fence(0).forever();
        let mut counts = drift::Baseline { seconds: 100.0, ..Default::default() };
        counts.api.insert("list pods".into(), 40);
        let kept = BaselineStatus { since: t(0).to_string(), learned_at: Some(t(100).to_string()), counts };
        m.configure(&key, &spec, false, Some(&kept));
        assert!(m.knows(&key));
        let v = m.view(&key);
        assert!(v.trigger.is_some());
        assert_eq!(v.baseline.unwrap().counts.api["list pods"], 40, "the leader's learning");
        // Leadership lost again: the next takeover seeds again.
        m.unseed(|_| true);
        assert!(!m.knows(&key));
    }
}
