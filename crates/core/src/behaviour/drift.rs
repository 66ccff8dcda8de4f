//! Behaviour baseline and drift. Pure: observations in, a learned baseline, a score in [0, 1] with
//! its explanation, and a decision. The clock is a parameter everywhere.
//!
//! Signals, each scored in [0, 1] and combined as a noisy OR (`1 - Π(1 - s)`):
//! - **rate**: per action and per API verb/resource, the count in the recent window against the
//!   baseline's rate (a Poisson z-score: natural variation stays well below the bar);
//! - **mix**: Jensen–Shannon divergence of the recent mix of actions and API calls from the
//!   baseline's mix (needs enough recent observations);
//! - **novelty**: an action, an API verb/resource, or a target never seen while learning; what an
//!   approved request covers is never novel (see `records`). When a list of the baseline is full,
//!   novelty is judged on a coarser key (the resource without the verb, then its group; a target's
//!   kind and namespace, then its kind), and `bounds` says so — never "nothing is novel";
//! - **out of scope**: API calls refused with 403 and Rejected requests — attempts beyond scope;
//! - **denials**: the share of the agent's requests that humans denied or let expire.
//!
//! During the learning period the state is `Learning`; afterwards, silence is `Inconclusive`,
//! never taken for health.

use crate::admission::identity::{CredentialId, distinct_ids};
use jiff::{SignedDuration, Timestamp};
pub use socwarden_api::drift::{Baseline, Sensitivity, Signal, SignalKind, State};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The most distinct keys a baseline keeps per kind; the rest is counted under `other`.
pub const MAX_KEYS: usize = 64;
/// The most targets a baseline remembers.
pub const MAX_TARGETS: usize = 64;
/// The most keys of each coarser list (API resources, API groups, target scopes, target kinds).
pub const MAX_COARSE: usize = 256;
/// The most observations kept in the recent window of one agent.
pub const MAX_WINDOW: usize = 20_000;
/// The most tokens an assessment names (the agent normally holds one; two across a rotation).
pub const MAX_CREDENTIALS: usize = 4;
const OTHER: &str = "(other)";

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An API call by the agent's ServiceAccount, from the API server's audit log.
    Api { key: String, code: u16 },
    /// An ActionRequest decided.
    Request { action: String, target: String, decision: socwarden_api::Decision },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub at: Timestamp,
    pub kind: Kind,
    /// Covered by an approved request (see `records`): never novel.
    pub recorded: bool,
    /// The token an API call was made with, when the API server named it (see `audit`).
    pub credential: Option<CredentialId>,
}

impl Observation {
    pub fn api(at: Timestamp, verb: &str, resource: &str, code: u16) -> Self {
        Self { at, kind: Kind::Api { key: format!("{verb} {resource}"), code }, recorded: false, credential: None }
    }

    pub fn request(at: Timestamp, action: &str, target: &str, decision: socwarden_api::Decision) -> Self {
        let kind = Kind::Request { action: action.into(), target: target.into(), decision };
        Self { at, kind, recorded: decision.runs(), credential: None }
    }

    /// The same, made with the token `credential`.
    pub fn with_credential(self, credential: Option<CredentialId>) -> Self {
        Self { credential, ..self }
    }
}

/// A list of the baseline that was full when something new came: novelty falls back to a coarser
/// key from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bound {
    ApiCalls,
    ApiResources,
    ApiGroups,
    Actions,
    Targets,
    TargetScopes,
    TargetKinds,
}

impl Bound {
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::ApiCalls => "apiCalls",
            Bound::ApiResources => "apiResources",
            Bound::ApiGroups => "apiGroups",
            Bound::Actions => "actions",
            Bound::Targets => "targets",
            Bound::TargetScopes => "targetScopes",
            Bound::TargetKinds => "targetKinds",
        }
    }
}

/// Counts `key`; a key beyond `MAX_KEYS` goes under `(other)`. True when the list just filled.
fn bump(map: &mut BTreeMap<String, u64>, key: &str) -> bool {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
    } else if map.len() < MAX_KEYS {
        map.insert(key.to_string(), 1);
    } else {
        let first = !map.contains_key(OTHER);
        *map.entry(OTHER.to_string()).or_default() += 1;
        return first;
    }
    false
}

/// Remembers `key`; once `max` are kept, `(other)` marks the set as incomplete. True when the set
/// just filled.
fn remember(set: &mut BTreeSet<String>, key: &str, max: usize) -> bool {
    if set.contains(key) {
        return false;
    }
    if set.len() < max {
        set.insert(key.to_string());
        return false;
    }
    set.insert(OTHER.to_string())
}

/// The coarser keys of an API call key `verb path`: the path, and its first segment.
fn api_ladder(key: &str) -> (&str, &str) {
    let path = key.split_once(' ').map(|(_, p)| p).unwrap_or(key);
    (path, path.split('/').next().unwrap_or(path))
}

/// The coarser keys of a target key `Kind/namespace/name`: `Kind/namespace`, and `Kind`.
fn target_ladder(key: &str) -> (&str, &str) {
    let kind = key.split('/').next().unwrap_or(key);
    let scope = key.rsplit_once('/').map(|(s, _)| s).unwrap_or(key);
    (scope, kind)
}

/// Whether `key` is new, judged on the finest list that is complete: the exact list, else the
/// coarser one, else the coarsest. When all three are full nothing can be said (and `bounds`
/// has said so).
fn unseen(exact: (bool, bool), coarse: (bool, bool), coarsest: (bool, bool)) -> bool {
    // (has the key, is full)
    for (has, is_full) in [exact, coarse, coarsest] {
        if has {
            return false;
        }
        if !is_full {
            return true;
        }
    }
    false
}

/// The lists of a baseline that filled while learning, with what novelty is judged on instead.
pub fn bounds(b: &Baseline) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |is_full: bool, what: String| {
        if is_full {
            out.push(what);
        }
    };
    say(b.api.contains_key(OTHER), format!("more than {MAX_KEYS} distinct API calls: new ones are judged by resource"));
    say(
        b.api_resources.contains(OTHER),
        format!("more than {MAX_COARSE} API resources: new ones are judged by API group"),
    );
    say(b.api_groups.contains(OTHER), format!("more than {MAX_COARSE} API groups: API calls are never novel"));
    say(
        b.actions.contains_key(OTHER),
        format!("more than {MAX_KEYS} actions (an agent lists at most {MAX_KEYS}): new ones are not novel"),
    );
    say(
        b.targets.contains(OTHER),
        format!("more than {MAX_TARGETS} targets: new ones are judged by kind and namespace"),
    );
    say(
        b.target_scopes.contains(OTHER),
        format!("more than {MAX_COARSE} target namespaces: new ones are judged by kind"),
    );
    say(b.target_kinds.contains(OTHER), format!("more than {MAX_COARSE} target kinds: targets are never novel"));
    out
}

/// Adds one observation made while learning to `b`; names the lists that just filled.
pub fn learn(b: &mut Baseline, o: &Observation) -> Vec<Bound> {
    let mut filled = Vec::new();
    let mut note = |f: bool, bound: Bound| {
        if f {
            filled.push(bound);
        }
    };
    match &o.kind {
        Kind::Api { code, .. } if *code == 403 => b.forbidden += 1,
        Kind::Api { key, .. } => {
            let (path, group) = api_ladder(key);
            note(bump(&mut b.api, key), Bound::ApiCalls);
            note(remember(&mut b.api_resources, path, MAX_COARSE), Bound::ApiResources);
            note(remember(&mut b.api_groups, group, MAX_COARSE), Bound::ApiGroups);
        }
        // A rejected request is an attempt beyond scope (any action name, any target): it is
        // not what the agent normally does, and must not fill the lists.
        Kind::Request { decision: socwarden_api::Decision::Rejected, .. } => {}
        Kind::Request { action, target, decision } => {
            note(bump(&mut b.actions, action), Bound::Actions);
            let (scope, kind) = target_ladder(target);
            note(remember(&mut b.targets, target, MAX_TARGETS), Bound::Targets);
            note(remember(&mut b.target_scopes, scope, MAX_COARSE), Bound::TargetScopes);
            note(remember(&mut b.target_kinds, kind, MAX_COARSE), Bound::TargetKinds);
            if decision.is_final() {
                b.decided += 1;
                if matches!(decision, socwarden_api::Decision::Denied | socwarden_api::Decision::Expired) {
                    b.denied += 1;
                }
            }
        }
    }
    filled
}

/// Events per second of `key` in one of `b`'s counts.
fn per_second(b: &Baseline, map: &BTreeMap<String, u64>, key: &str) -> f64 {
    let n = map.get(key).copied().unwrap_or(0) as f64;
    if b.seconds <= 0.0 { 0.0 } else { n / b.seconds }
}

/// What was never seen while learning, by how much it weighs as evidence. The order (API call,
/// action, target) is the order in which they are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Novel {
    Api,
    Action,
    Target,
}

impl Novel {
    fn weight(self) -> f64 {
        match self {
            Novel::Action => 0.6,
            Novel::Api => 0.45,
            Novel::Target => 0.1,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Novel::Action => "action",
            Novel::Api => "API call",
            Novel::Target => "target",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub state: State,
    pub score: f64,
    pub signals: Vec<Signal>,
    /// The tokens the judged calls were made with (most recent first, at most `MAX_CREDENTIALS`):
    /// what a containment names as the credentials that tripped it.
    pub credentials: Vec<CredentialId>,
}

/// The recent window an assessment looks at: a twentieth of the learning period, within 5–60 s.
pub fn window_for(learning: std::time::Duration) -> SignedDuration {
    let secs = (learning.as_secs_f64() / 20.0).clamp(5.0, 60.0);
    SignedDuration::from_secs_f64(secs)
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Jensen–Shannon divergence (base 2, so in [0, 1]) of two count distributions.
pub fn jensen_shannon(p: &BTreeMap<String, f64>, q: &BTreeMap<String, f64>) -> f64 {
    let (sp, sq): (f64, f64) = (p.values().sum(), q.values().sum());
    if sp <= 0.0 || sq <= 0.0 {
        return 0.0;
    }
    let keys: BTreeSet<&String> = p.keys().chain(q.keys()).collect();
    let mut js = 0.0;
    for k in keys {
        let a = p.get(k).copied().unwrap_or(0.0) / sp;
        let b = q.get(k).copied().unwrap_or(0.0) / sq;
        let m = (a + b) / 2.0;
        if a > 0.0 {
            js += 0.5 * a * (a / m).log2();
        }
        if b > 0.0 {
            js += 0.5 * b * (b / m).log2();
        }
    }
    clamp01(js)
}

/// How many windows the mix of behaviour is judged over (a slow shift needs more observations).
pub const MIX_WINDOWS: i32 = 5;

/// The recent window, counted once for every signal.
#[derive(Debug, Default)]
struct Counts {
    api: BTreeMap<String, u64>,
    actions: BTreeMap<String, u64>,
    forbidden: u64,
    rejected: u64,
    decided: u64,
    denied: u64,
    novel: BTreeSet<(String, Novel)>,
}

impl Counts {
    fn of(baseline: &Baseline, recent: &[&Observation]) -> Self {
        let mut c = Counts::default();
        for o in recent {
            match &o.kind {
                Kind::Api { code: 403, .. } => c.forbidden += 1,
                Kind::Api { key, .. } => {
                    *c.api.entry(key.clone()).or_default() += 1;
                    let (path, group) = api_ladder(key);
                    let b = baseline;
                    let new = unseen(
                        (b.api.contains_key(key), b.api.contains_key(OTHER)),
                        (b.api_resources.contains(path), b.api_resources.contains(OTHER)),
                        (b.api_groups.contains(group), b.api_groups.contains(OTHER)),
                    );
                    if new && !o.recorded {
                        c.novel.insert((key.clone(), Novel::Api));
                    }
                }
                Kind::Request { action, target, decision } => {
                    *c.actions.entry(action.clone()).or_default() += 1;
                    // An approved request is a record of approved use: its action and target
                    // are not novel however rarely they are needed.
                    let b = baseline;
                    if !o.recorded && !b.actions.contains_key(action) && !b.actions.contains_key(OTHER) {
                        c.novel.insert((action.clone(), Novel::Action));
                    }
                    let (scope, kind) = target_ladder(target);
                    let new = unseen(
                        (b.targets.contains(target), b.targets.contains(OTHER)),
                        (b.target_scopes.contains(scope), b.target_scopes.contains(OTHER)),
                        (b.target_kinds.contains(kind), b.target_kinds.contains(OTHER)),
                    );
                    // An agent that never named a target while learning has no targets to compare with.
                    if new && !o.recorded && !b.targets.is_empty() {
                        c.novel.insert((target.clone(), Novel::Target));
                    }
                    match decision {
                        socwarden_api::Decision::Rejected => c.rejected += 1,
                        socwarden_api::Decision::Denied | socwarden_api::Decision::Expired => {
                            c.decided += 1;
                            c.denied += 1;
                        }
                        d if d.is_final() => c.decided += 1,
                        _ => {}
                    }
                }
            }
        }
        c
    }
}

/// A signal worth naming: a positive score, clamped to [0, 1] and rounded to two places.
fn signal(signal: SignalKind, observed: String, expected: String, score: f64) -> Option<Signal> {
    (score > 0.0).then(|| Signal { signal, observed, expected, score: round2(clamp01(score)) })
}

/// Rate: the worst Poisson z-score over every key seen while learning (a key never seen is
/// novelty, not rate). z below 4 is ordinary variation; z of 10 or more is certain.
fn rate(baseline: &Baseline, c: &Counts, secs: f64) -> Option<Signal> {
    let mut worst: Option<(f64, &String, u64, f64)> = None;
    for (map, base) in [(&c.api, &baseline.api), (&c.actions, &baseline.actions)] {
        for (k, n) in map.iter().filter(|(k, _)| base.contains_key(*k)) {
            let expected = per_second(baseline, base, k) * secs;
            let z = (*n as f64 - expected) / (expected + 1.0).sqrt();
            if worst.is_none_or(|w| z > w.0) {
                worst = Some((z, k, *n, expected));
            }
        }
    }
    let (z, k, n, expected) = worst?;
    signal(
        SignalKind::Rate,
        format!("{n} × {k} in the last {secs:.0}s"),
        format!("about {expected:.1}"),
        (z - 4.0) / 6.0,
    )
}

/// Mix: the Jensen–Shannon divergence of the longer window's mix of actions and API calls from the
/// baseline's, once there are at least 20 of them.
fn mix(baseline: &Baseline, longer: &[&Observation]) -> Option<Signal> {
    let mut p: BTreeMap<String, f64> = BTreeMap::new();
    for o in longer {
        match &o.kind {
            Kind::Api { key, code } if *code != 403 => *p.entry(format!("api:{key}")).or_default() += 1.0,
            Kind::Request { action, .. } => *p.entry(format!("action:{action}")).or_default() += 1.0,
            _ => {}
        }
    }
    let total = p.values().sum::<f64>() as u64;
    if total < 20 {
        return None;
    }
    let prefixed = |m: &BTreeMap<String, u64>, prefix: &str| -> Vec<(String, f64)> {
        m.iter().map(|(k, v)| (format!("{prefix}{k}"), *v as f64)).collect()
    };
    let q: BTreeMap<String, f64> =
        prefixed(&baseline.api, "api:").into_iter().chain(prefixed(&baseline.actions, "action:")).collect();
    let js = jensen_shannon(&p, &q);
    signal(
        SignalKind::Mix,
        format!("Jensen–Shannon divergence {js:.2} over {total} calls"),
        "below 0.15".into(),
        (js - 0.15) / 0.35,
    )
}

/// Novelty: everything never seen while learning, as a noisy OR of its weights; names up to five.
fn novelty(c: &Counts) -> Option<Signal> {
    if c.novel.is_empty() {
        return None;
    }
    let keep: f64 = c.novel.iter().map(|(_, n)| 1.0 - n.weight()).product();
    let named: Vec<String> = c.novel.iter().take(5).map(|(what, n)| format!("{} {what}", n.noun())).collect();
    signal(
        SignalKind::Novelty,
        format!("never seen: {}", named.join(", ")),
        "only what was seen while learning".into(),
        1.0 - keep,
    )
}

/// Out of scope: API calls refused with 403 and rejected requests, against the (near zero)
/// baseline; five in excess are certain.
fn out_of_scope(baseline: &Baseline, c: &Counts, secs: f64) -> Option<Signal> {
    let attempts = c.forbidden + c.rejected;
    if attempts == 0 {
        return None;
    }
    let expected = baseline.forbidden as f64 / baseline.seconds.max(1.0) * secs;
    signal(
        SignalKind::OutOfScope,
        format!(
            "{} API call(s) refused with 403, {} request(s) rejected in the last {secs:.0}s",
            c.forbidden, c.rejected
        ),
        format!("about {expected:.1}"),
        (attempts as f64 - expected) / 5.0,
    )
}

/// Denials: the share of decided requests that humans denied or let expire, against the
/// baseline's share, once at least three were decided.
fn denials(baseline: &Baseline, c: &Counts) -> Option<Signal> {
    if c.decided < 3 {
        return None;
    }
    let ratio = c.denied as f64 / c.decided as f64;
    let base = if baseline.decided == 0 { 0.0 } else { baseline.denied as f64 / baseline.decided as f64 };
    signal(
        SignalKind::Denials,
        format!("{} of {} requests denied or expired", c.denied, c.decided),
        format!("{:.0}%", base * 100.0),
        (ratio - base - 0.2) / 0.5,
    )
}

/// An empty window: inconclusive where the baseline expected activity (at least three calls),
/// normal for an agent that is quiet anyway. Silence is never taken for health.
fn silence(baseline: &Baseline, secs: f64) -> Assessment {
    let calls = baseline.api.values().sum::<u64>() + baseline.actions.values().sum::<u64>();
    let expected = calls as f64 / baseline.seconds.max(1.0) * secs;
    if expected < 3.0 {
        return Assessment { state: State::Normal, score: 0.0, signals: vec![], credentials: vec![] };
    }
    let s = Signal {
        signal: SignalKind::Silence,
        observed: format!("no activity in the last {secs:.0}s"),
        expected: format!("about {expected:.0} calls"),
        score: 0.0,
    };
    Assessment { state: State::Inconclusive, score: 0.0, signals: vec![s], credentials: vec![] }
}

/// Scores the recent window against the baseline; `longer` (a few windows) is used for the mix.
/// Each signal is one function; the score is their noisy OR.
pub fn assess(
    baseline: &Baseline,
    recent: &[&Observation],
    longer: &[&Observation],
    window: SignedDuration,
) -> Assessment {
    let secs = window.as_secs_f64();
    if recent.is_empty() {
        return silence(baseline, secs);
    }
    let c = Counts::of(baseline, recent);
    let signals: Vec<Signal> = [
        rate(baseline, &c, secs),
        mix(baseline, longer),
        novelty(&c),
        out_of_scope(baseline, &c, secs),
        denials(baseline, &c),
    ]
    .into_iter()
    .flatten()
    .collect();
    let score = round2(clamp01(1.0 - signals.iter().map(|s| 1.0 - s.score).product::<f64>()));
    Assessment { state: State::Normal, score, signals, credentials: vec![] }
}

/// The behaviour model of one agent: the baseline being learned or learned, and the recent window.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub baseline: Baseline,
    /// When learning started.
    pub since: Option<Timestamp>,
    /// When learning ended (the baseline is complete).
    pub learned_at: Option<Timestamp>,
    pub recent: VecDeque<Observation>,
}

impl Model {
    /// Records an observation: into the baseline while learning, into the window always. Names
    /// the lists of the baseline that just filled.
    pub fn observe(&mut self, o: Observation, learning: std::time::Duration) -> Vec<Bound> {
        let mut filled = Vec::new();
        let since = *self.since.get_or_insert(o.at);
        if self.learned_at.is_none() {
            // Checked: an event time near the end of the calendar must not overflow (and panic).
            let learning = SignedDuration::try_from(learning).unwrap_or(SignedDuration::from_hours(24));
            let end = since.checked_add(learning).unwrap_or(Timestamp::MAX);
            if o.at < end {
                filled = learn(&mut self.baseline, &o);
                self.baseline.seconds = o.at.duration_since(since).as_secs_f64().max(self.baseline.seconds);
            }
        }
        if self.recent.len() >= MAX_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(o);
        filled
    }

    /// Drops what fell out of the (longer, mix) window; closes the learning period when it is over.
    pub fn advance(&mut self, now: Timestamp, learning: std::time::Duration) {
        let window = window_for(learning) * MIX_WINDOWS;
        while self.recent.front().is_some_and(|o| now.duration_since(o.at) > window) {
            self.recent.pop_front();
        }
        // A clock that jumps back leaves observations "in the future": drop them too.
        while self.recent.back().is_some_and(|o| o.at.duration_since(now) > SignedDuration::from_secs(5)) {
            self.recent.pop_back();
        }
        if let (None, Some(since)) = (self.learned_at, self.since) {
            let learning = SignedDuration::try_from(learning).unwrap_or(SignedDuration::from_hours(24));
            if now >= since.checked_add(learning).unwrap_or(Timestamp::MAX) {
                self.baseline.seconds = learning.as_secs_f64();
                self.learned_at = Some(now);
            }
        }
    }

    /// The assessment now.
    pub fn assess(&self, now: Timestamp, learning: std::time::Duration) -> Assessment {
        if self.learned_at.is_none() {
            return Assessment { state: State::Learning, score: 0.0, signals: vec![], credentials: vec![] };
        }
        let window = window_for(learning);
        // Right after learning the window is not full yet: judge the part that exists.
        let covered = self.learned_at.map(|l| now.duration_since(l)).filter(|d| *d < window).unwrap_or(window);
        let covered = covered.max(SignedDuration::from_secs(1));
        let cutoff = now.checked_sub(covered).unwrap_or(Timestamp::MIN);
        let recent: Vec<&Observation> = self.recent.iter().filter(|o| o.at >= cutoff).collect();
        let since_learned = self.learned_at.map(|l| now.duration_since(l)).unwrap_or(window);
        let long_cutoff = now
            .checked_sub((window * MIX_WINDOWS).min(since_learned.max(SignedDuration::from_secs(1))))
            .unwrap_or(Timestamp::MIN);
        let longer: Vec<&Observation> = self.recent.iter().filter(|o| o.at >= long_cutoff).collect();
        let credentials = distinct_ids(recent.iter().rev().filter_map(|o| o.credential), MAX_CREDENTIALS);
        Assessment { credentials, ..assess(&self.baseline, &recent, &longer, covered) }
    }
}

/// What to do about an assessment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Nothing,
    /// Report (status, Event, metrics) but do not act: onDrift Alert, or below the threshold.
    Report,
    /// Contain the agent.
    Pause,
}

pub fn decide(a: &Assessment, sensitivity: Sensitivity, pause_on_drift: bool) -> Verdict {
    match a.state {
        State::Learning | State::Inconclusive => Verdict::Nothing,
        _ if a.score >= sensitivity.threshold() && pause_on_drift => Verdict::Pause,
        _ if a.score >= sensitivity.threshold() => Verdict::Report,
        _ if !a.signals.is_empty() => Verdict::Report,
        _ => Verdict::Nothing,
    }
}

/// The judge: an assessment at or above the agent's threshold is `Drifting`, and what to do about
/// it follows from the sensitivity and `onDrift`.
pub fn judge(mut a: Assessment, sensitivity: Sensitivity, pause_on_drift: bool) -> (Assessment, Verdict) {
    if a.state == State::Normal && a.score >= sensitivity.threshold() {
        a.state = State::Drifting;
    }
    let verdict = decide(&a, sensitivity, pause_on_drift);
    (a, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_api::Decision;
    use std::time::Duration;

    const LEARN: Duration = Duration::from_secs(600); // window: 30 s

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_767_225_600 + s).unwrap()
    }

    fn req(at: i64, action: &str, target: &str, d: Decision) -> Observation {
        Observation::request(t(at), action, target, d)
    }

    /// Ten minutes of an agent listing pods every 2 s and enriching an alert every 20 s.
    fn learned() -> Model {
        let mut m = Model::default();
        for s in (0..600).step_by(2) {
            m.observe(Observation::api(t(s), "list", "pods", 200), LEARN);
            if s % 20 == 0 {
                m.observe(req(s, "enrich", &format!("Pod/web/p{}", s % 60), Decision::AutoApproved), LEARN);
            }
        }
        m.advance(t(600), LEARN);
        m
    }

    fn run(m: &mut Model, obs: Vec<Observation>, now: i64) -> Assessment {
        for o in obs {
            m.observe(o, LEARN);
        }
        m.advance(t(now), LEARN);
        m.assess(t(now), LEARN)
    }

    #[test]
    fn learning_then_normal() {
        let mut m = Model::default();
        m.observe(Observation::api(t(0), "list", "pods", 200), LEARN);
        assert_eq!(m.assess(t(1), LEARN).state, State::Learning);
        let mut m = learned();
        assert_eq!(m.baseline.api["list pods"], 300);
        assert_eq!(m.baseline.seconds, 600.0);
        // The same behaviour afterwards, with natural jitter: normal, score 0.
        let mut obs = vec![];
        for s in (600..660).step_by(2) {
            obs.push(Observation::api(t(s + (s % 3 == 0) as i64), "list", "pods", 200));
        }
        obs.push(req(640, "enrich", "Pod/web/p20", Decision::AutoApproved));
        let a = run(&mut m, obs, 660);
        assert_eq!((a.state, a.score), (State::Normal, 0.0), "{:?}", a.signals);
        assert_eq!(decide(&a, Sensitivity::High, true), Verdict::Nothing);
    }

    #[test]
    fn a_burst_of_403s_is_out_of_scope() {
        let mut m = learned();
        let obs: Vec<Observation> = (0..8).map(|i| Observation::api(t(620 + i), "get", "secrets", 403)).collect();
        let a = run(&mut m, obs, 628);
        assert!(a.score >= 0.9, "{a:?}");
        assert!(
            a.signals
                .iter()
                .any(|s| s.signal == SignalKind::OutOfScope && s.observed.contains("8 API call(s) refused with 403"))
        );
        assert_eq!(decide(&a, Sensitivity::Medium, true), Verdict::Pause);
        assert_eq!(decide(&a, Sensitivity::Medium, false), Verdict::Report);
    }

    #[test]
    fn twenty_times_the_rate_is_a_rate_anomaly() {
        let mut m = learned();
        // 15 calls per 30 s normally; 300 in 30 s now.
        let obs: Vec<Observation> = (0..300)
            .map(|i| Observation::api(t(630) + SignedDuration::from_millis(i * 100), "list", "pods", 200))
            .collect();
        let a = run(&mut m, obs, 660);
        let rate = a.signals.iter().find(|s| s.signal == SignalKind::Rate).expect("rate signal");
        assert_eq!(rate.score, 1.0, "{rate:?}");
        assert!(rate.observed.contains("list pods") && rate.expected.contains("15.0"), "{rate:?}");
        assert_eq!(decide(&a, Sensitivity::Low, true), Verdict::Pause);
    }

    #[test]
    fn a_novel_action_pauses_at_high_and_is_reported_at_low() {
        let mut m = learned();
        // Filed and waiting for approval: a record, but not of approved use.
        let a = run(&mut m, vec![req(650, "isolate", "Pod/web/p0", Decision::Pending)], 651);
        assert!((0.5..0.9).contains(&a.score), "{a:?}");
        assert!(a.signals.iter().any(|s| s.signal == SignalKind::Novelty && s.observed.contains("action isolate")));
        assert_eq!(decide(&a, Sensitivity::High, true), Verdict::Pause);
        assert_eq!(decide(&a, Sensitivity::Low, true), Verdict::Report);
        assert_eq!(decide(&a, Sensitivity::Medium, true), Verdict::Report);
    }

    #[test]
    fn a_gradual_shift_of_the_mix_shows_as_divergence() {
        let mut m = learned();
        // About the usual number of calls, but most go to configmaps (seen once while learning).
        m.baseline.api.insert("get configmaps".into(), 1);
        let mut obs: Vec<Observation> =
            (0..22).map(|i| Observation::api(t(631 + i), "get", "configmaps", 200)).collect();
        obs.extend((0..8).map(|i| Observation::api(t(631 + 3 * i), "list", "pods", 200)));
        let a = run(&mut m, obs, 660);
        let mix = a.signals.iter().find(|s| s.signal == SignalKind::Mix).expect("mix signal");
        assert!(mix.score > 0.5, "{a:?}");
    }

    #[test]
    fn recorded_use_is_never_novel() {
        let mut m = learned();
        // The first use of a rare action, approved, and the write it covers.
        let mut delete = Observation::api(t(651), "delete", "pods", 200);
        delete.recorded = true;
        let a = run(&mut m, vec![req(650, "isolate", "Pod/db/x9", Decision::AutoApproved), delete], 652);
        assert_eq!(a.score, 0.0, "{a:?}");
        // The same write with no record is novel.
        let mut m = learned();
        let a = run(&mut m, vec![Observation::api(t(651), "delete", "pods", 200)], 652);
        assert!(
            a.signals.iter().any(|s| s.signal == SignalKind::Novelty && s.observed.contains("delete pods")),
            "{a:?}"
        );
    }

    #[test]
    fn full_lists_fall_back_to_coarser_keys_and_say_so() {
        let mut m = Model::default();
        let mut filled = Vec::new();
        for i in 0..100 {
            filled.extend(m.observe(Observation::api(t(i), "get", &format!("r{i}"), 200), LEARN));
            let target = format!("Pod/web/p{i}");
            filled.extend(m.observe(req(i, "enrich", &target, Decision::AutoApproved), LEARN));
        }
        assert_eq!(filled, vec![Bound::ApiCalls, Bound::Targets], "each list says once that it filled");
        assert_eq!(bounds(&m.baseline).len(), 2, "{:?}", bounds(&m.baseline));
        assert!(bounds(&m.baseline)[0].contains("judged by resource"));
        m.advance(t(600), LEARN);
        let novel = |m: &mut Model, o: Observation| {
            let a = run(m, vec![o], 610);
            a.signals.iter().filter(|s| s.signal == SignalKind::Novelty).map(|s| s.observed.clone()).next()
        };
        // Seen while learning, though the exact list forgot it: its resource is known.
        assert_eq!(novel(&mut m.clone(), Observation::api(t(609), "list", "r90", 200)), None);
        // A resource never seen is novel, full list or not.
        assert!(novel(&mut m.clone(), Observation::api(t(609), "get", "secrets", 200)).is_some());
        // Targets: a pod in a namespace seen is not novel; a namespace never seen is.
        let pending = |target: &str| Observation::request(t(609), "enrich", target, Decision::Pending);
        assert_eq!(novel(&mut m.clone(), pending("Pod/web/p99x")), None);
        assert!(novel(&mut m.clone(), pending("Pod/db/p1")).unwrap().contains("target Pod/db/p1"));
        // Rejected attempts (any action, any target) never fill a list.
        let mut b = Baseline::default();
        for i in 0..500 {
            learn(&mut b, &req(0, &format!("a{i}"), &format!("K{i}/n/x"), Decision::Rejected));
        }
        assert!(b.actions.is_empty() && b.targets.is_empty() && bounds(&b).is_empty());
    }

    #[test]
    fn the_judge_names_drift_only_at_the_threshold() {
        let mut m = learned();
        let a = run(&mut m, vec![req(650, "isolate", "Pod/web/p0", Decision::Pending)], 651);
        let (high, verdict) = judge(a.clone(), Sensitivity::High, true);
        assert_eq!((high.state, verdict), (State::Drifting, Verdict::Pause));
        let (low, verdict) = judge(a.clone(), Sensitivity::Low, true);
        assert_eq!((low.state, verdict), (State::Normal, Verdict::Report));
        let (alert, verdict) = judge(a, Sensitivity::High, false);
        assert_eq!((alert.state, verdict), (State::Drifting, Verdict::Report));
        let (quiet, verdict) = judge(run(&mut learned(), vec![], 700), Sensitivity::High, true);
        assert_eq!((quiet.state, verdict), (State::Inconclusive, Verdict::Nothing));
    }

    #[test]
    fn denials_count_against_the_agent() {
        let mut m = learned();
        let obs = (0..4).map(|i| req(640 + i, "enrich", "Pod/web/p0", Decision::Denied)).collect();
        let a = run(&mut m, obs, 645);
        assert!(a.signals.iter().any(|s| s.signal == SignalKind::Denials && s.observed.contains("4 of 4")));
    }

    #[test]
    fn silence_after_learning_is_inconclusive_not_healthy() {
        let mut m = learned();
        let a = run(&mut m, vec![], 700);
        assert_eq!(a.state, State::Inconclusive);
        assert_eq!(decide(&a, Sensitivity::High, true), Verdict::Nothing);
        // A very quiet agent (expected < 3 calls per window) is simply normal when silent.
        let mut quiet = Model::default();
        quiet.observe(Observation::api(t(0), "list", "pods", 200), LEARN);
        quiet.advance(t(600), LEARN);
        assert_eq!(quiet.assess(t(700), LEARN).state, State::Normal);
    }

    #[test]
    fn first_seconds_after_learning_judge_the_part_of_the_window_that_exists() {
        let mut m = learned();
        // One second after learning, a single call is normal, not "1 call where 0.5 expected".
        let a = run(&mut m, vec![Observation::api(t(600), "list", "pods", 200)], 601);
        assert_eq!(a.score, 0.0, "{a:?}");
    }

    #[test]
    fn clock_jumps_do_not_create_evidence() {
        let mut m = learned();
        // Observations stamped an hour ahead (a skewed node), then the clock goes on normally.
        for i in 0..50 {
            m.observe(Observation::api(t(4200 + i), "list", "pods", 200), LEARN);
        }
        m.advance(t(610), LEARN);
        assert!(m.recent.iter().all(|o| o.at <= t(615)));
        // And a clock that jumps forward empties the window instead of counting stale calls.
        m.advance(t(100_000), LEARN);
        assert_eq!(m.assess(t(100_000), LEARN).state, State::Inconclusive);
    }

    #[test]
    fn memory_is_bounded() {
        let mut m = learned();
        for i in 0..(MAX_WINDOW as i64 + 100) {
            m.observe(Observation::api(t(601) + SignedDuration::from_micros(i), "list", "pods", 200), LEARN);
        }
        assert_eq!(m.recent.len(), MAX_WINDOW);
        let mut b = Baseline::default();
        for i in 0..200 {
            learn(&mut b, &Observation::api(t(0), "get", &format!("r{i}"), 200));
        }
        assert_eq!(b.api.len(), MAX_KEYS + 1);
        assert!(b.api.contains_key(OTHER));
    }

    #[test]
    fn jensen_shannon_bounds() {
        let p: BTreeMap<String, f64> = [("a".into(), 1.0)].into();
        let q: BTreeMap<String, f64> = [("b".into(), 1.0)].into();
        assert!((jensen_shannon(&p, &q) - 1.0).abs() < 1e-9);
        assert_eq!(jensen_shannon(&p, &p), 0.0);
        assert_eq!(jensen_shannon(&p, &BTreeMap::new()), 0.0);
    }
}
