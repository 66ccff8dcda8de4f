//! Detection quality of the drift model over a generated workload (no cluster: the pure model with
//! a simulated clock, exactly as the operator runs it):
//! - 1,000 agents with Poisson-varying normal traffic, each with its own rates and mix, learned for
//!   an hour and then watched for an hour at medium sensitivity: false positives (target 0);
//! - scripted attacks on further agents — scope probing, rate burst, novel action refused by a
//!   human (at high sensitivity), gradual mix shift — detected (target all), with the time to
//!   detect each;
//! - approved vs done, through the records layer as the operator runs it (`records::covering`
//!   first, the statistical model second): the same 1,000 agents' legitimate first use of a rare
//!   action — an approved request, the covered delete and kubectl's read-back — false positives
//!   (target 0); and unrecorded in-grant writes on further agents, fed in audit batches of 200 ms:
//!   detections (target all) and writes that reached the API server before the batch holding the
//!   first one was judged (target median ≤ 1).

use jiff::{SignedDuration, Timestamp};
use socwarden_api::Decision;
use socwarden_core::agent::rbac::Rule;
use socwarden_core::behaviour::drift::{self, Model, Observation, Sensitivity, Verdict};
use socwarden_core::behaviour::records::{self, Access, Object, Record};
use std::time::Duration;

const LEARNING: Duration = Duration::from_secs(3600);
const WATCH: i64 = 3600;
const TICK_MS: i64 = 2000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential inter-arrival time of a Poisson process of `rate` per second, in ms.
    fn gap_ms(&mut self, rate: f64) -> i64 {
        ((-(1.0 - self.unit()).ln() / rate) * 1000.0).max(1.0) as i64
    }
}

#[derive(Clone)]
struct Profile {
    /// API calls per second, and their mix.
    rate: f64,
    mix: Vec<(&'static str, &'static str, f64)>,
    /// Requests per second, and their mix.
    req_rate: f64,
    actions: Vec<(&'static str, f64)>,
}

fn profile(rng: &mut Rng) -> Profile {
    let a = 0.05 + rng.unit() * 0.6;
    Profile {
        rate: 0.1 + rng.unit() * 3.0,
        mix: vec![("list", "pods", 0.6), ("get", "pods", 0.25), ("get", "configmaps", 0.1), ("get", "pods/log", 0.05)],
        req_rate: 0.002 + rng.unit() * 0.03,
        actions: vec![("enrich", 1.0 - a), ("ticket", a)],
    }
}

fn pick<T: Copy>(rng: &mut Rng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let mut x = rng.unit() * total;
    for (t, w) in items {
        if x < *w {
            return *t;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap()
}

/// Normal traffic of `p` between `from` and `to` (ms since t0).
fn normal(rng: &mut Rng, p: &Profile, from: i64, to: i64) -> Vec<Observation> {
    let mut out = Vec::new();
    let mut t = from;
    loop {
        t += rng.gap_ms(p.rate);
        if t >= to {
            break;
        }
        let mix: Vec<((&str, &str), f64)> = p.mix.iter().map(|(v, r, w)| ((*v, *r), *w)).collect();
        let (verb, res) = pick(rng, &mix);
        out.push(Observation::api(t0() + SignedDuration::from_millis(t), verb, res, 200));
    }
    let mut t = from;
    loop {
        t += rng.gap_ms(p.req_rate);
        if t >= to {
            break;
        }
        let action = pick(rng, &p.actions);
        let target = format!("Pod/web/p{}", rng.next() % 20);
        out.push(Observation::request(t0() + SignedDuration::from_millis(t), action, &target, Decision::AutoApproved));
    }
    out.sort_by_key(|o| o.at);
    out
}

/// Feeds `obs` and ticks every 2 s; returns the first time (ms since `attack_at`) the verdict is Pause.
fn run(
    model: &mut Model,
    obs: Vec<Observation>,
    from: i64,
    to: i64,
    sensitivity: Sensitivity,
    attack_at: i64,
) -> Option<i64> {
    let mut it = obs.into_iter().peekable();
    let mut t = from;
    while t < to {
        t += TICK_MS;
        let now = t0() + SignedDuration::from_millis(t);
        while it.peek().is_some_and(|o| o.at <= now) {
            model.observe(it.next().unwrap(), LEARNING);
        }
        model.advance(now, LEARNING);
        // The operator's own judge (monitor.rs calls the same function).
        if drift::judge(model.assess(now, LEARNING), sensitivity, true).1 == Verdict::Pause {
            return Some(t - attack_at);
        }
    }
    None
}

fn learned(rng: &mut Rng, p: &Profile) -> Model {
    let mut m = Model::default();
    let end = LEARNING.as_millis() as i64;
    for o in normal(rng, p, 0, end) {
        m.observe(o, LEARNING);
    }
    m.advance(t0() + SignedDuration::from_millis(end), LEARNING);
    m
}

fn summary(name: &str, times: &[Option<i64>]) {
    let mut hit: Vec<f64> = times.iter().flatten().map(|ms| *ms as f64 / 1000.0).collect();
    hit.sort_by(f64::total_cmp);
    let med = hit.get(hit.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{name:<28} detected {:>3}/{:<3}  time to detect: median {med:>6.1}s  max {:>6.1}s",
        hit.len(),
        times.len(),
        hit.last().copied().unwrap_or(f64::NAN)
    );
}

/// One call of an agent as the audit sink sees it: its observation, and the access the records
/// layer matches.
fn access(at_ms: i64, verb: &str, resource: &str, name: &str) -> (Observation, Access) {
    let at = t0() + SignedDuration::from_millis(at_ms);
    let a = Access {
        at,
        verb: verb.into(),
        resource: resource.into(),
        namespace: "web".into(),
        name: name.into(),
        code: 200,
        ..Default::default()
    };
    (Observation::api(at, verb, resource, 200), a)
}

/// The records layer, as `records.rs` and `monitor.rs` run it: a covered call is never novel; a
/// write no record covers contains at once. Returns whether it contained.
fn through_records(model: &mut Model, call: (Observation, Access), recs: &[Record]) -> bool {
    let (mut o, a) = call;
    match records::covering(&a, recs) {
        Some(_) => o.recorded = true,
        None if a.writes() => return true,
        None => {}
    }
    model.observe(o, LEARNING);
    false
}

/// Legitimate first use of a rare action: an approved request to delete one pod, the delete it
/// covers and kubectl's read-back, amid the agent's normal traffic. True when it was paused.
fn first_use(rng: &mut Rng, p: &Profile, end: i64, at: i64) -> bool {
    let mut m = learned(rng, p);
    let victim = format!("victim-{}", rng.next() % 1000);
    let decided = t0() + SignedDuration::from_millis(at);
    let grants = vec![Rule::new([""], ["pods"], ["get", "list", "delete"], Vec::<String>::new())];
    let object = Object { group: "".into(), resource: "pods".into(), namespace: "web".into(), name: victim.clone() };
    let recs = [Record {
        request: "isolate-1",
        decision: Decision::AutoApproved,
        decided_at: decided,
        grants,
        objects: vec![object],
    }];
    let mut calls: Vec<(Observation, Option<Access>)> =
        normal(rng, p, end, at + WATCH * 1000).into_iter().map(|o| (o, None)).collect();
    calls.push((
        Observation::request(decided, "isolate-pod", &format!("Pod/web/{victim}"), Decision::AutoApproved),
        None,
    ));
    for (ms, verb, name) in [(2000, "delete", victim.as_str()), (2100, "get", victim.as_str()), (2200, "list", "")] {
        let (o, a) = access(at + ms, verb, "pods", name);
        calls.push((o, Some(a)));
    }
    calls.sort_by_key(|c| c.0.at);
    let mut it = calls.into_iter().peekable();
    let mut t = end;
    while t < at + WATCH * 1000 {
        t += TICK_MS;
        let now = t0() + SignedDuration::from_millis(t);
        while it.peek().is_some_and(|c| c.0.at <= now) {
            let (o, a) = it.next().unwrap();
            let contained = match a {
                Some(a) => through_records(&mut m, (o, a), &recs),
                None => {
                    m.observe(o, LEARNING);
                    false
                }
            };
            if contained {
                return true;
            }
        }
        m.advance(now, LEARNING);
        if drift::judge(m.assess(now, LEARNING), Sensitivity::Medium, true).1 == Verdict::Pause {
            return true;
        }
    }
    false
}

/// Unrecorded in-grant writes: from `at`, the agent deletes pods (Poisson, 2 per second) with no
/// request, amid its normal traffic; the calls reach the sink in audit batches of 200 ms. Returns
/// the writes that reached the API server up to the end of the batch judged to contain it.
fn unrecorded_writes(rng: &mut Rng, p: &Profile, end: i64, at: i64) -> Option<usize> {
    const BATCH_MS: i64 = 200;
    let mut m = learned(rng, p);
    let mut writes: Vec<i64> = Vec::new();
    let mut t = at;
    while writes.len() < 30 {
        writes.push(t);
        t += rng.gap_ms(2.0);
    }
    let mut calls: Vec<(Observation, Option<Access>)> = normal(rng, p, end, t).into_iter().map(|o| (o, None)).collect();
    for (i, w) in writes.iter().enumerate() {
        let (o, a) = access(*w, "delete", "pods", &format!("web-{i}"));
        calls.push((o, Some(a)));
    }
    calls.sort_by_key(|c| c.0.at);
    let mut it = calls.into_iter().peekable();
    let mut batch_end = end;
    while batch_end < t {
        batch_end += BATCH_MS;
        let now = t0() + SignedDuration::from_millis(batch_end);
        while it.peek().is_some_and(|c| c.0.at <= now) {
            let (o, a) = it.next().unwrap();
            let contained = match a {
                Some(a) => through_records(&mut m, (o, a), &[]),
                None => {
                    m.observe(o, LEARNING);
                    false
                }
            };
            if contained {
                return Some(writes.iter().filter(|w| **w <= batch_end).count());
            }
        }
    }
    None
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--agents")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let attacks: usize = 50;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let end = LEARNING.as_millis() as i64;
    let started = std::time::Instant::now();

    // Normal agents: an hour of learning, an hour of the same behaviour.
    let mut false_positives = 0;
    for _ in 0..n {
        let p = profile(&mut rng);
        let mut m = learned(&mut rng, &p);
        let obs = normal(&mut rng, &p, end, end + WATCH * 1000);
        if run(&mut m, obs, end, end + WATCH * 1000, Sensitivity::Medium, end).is_some() {
            false_positives += 1;
        }
    }
    println!("normal agents: {n}, watched {WATCH}s each after {}s of learning, medium sensitivity", LEARNING.as_secs());
    println!("false positives: {false_positives}  (target 0)");

    // The same kind of agents use a rare action for the first time, as approved.
    let mut first_use_paused = 0;
    for _ in 0..n {
        let p = profile(&mut rng);
        if first_use(&mut rng, &p, end, end + 600_000) {
            first_use_paused += 1;
        }
    }
    println!(
        "legitimate first use of a rare action (approved request, covered delete, read-back): paused {first_use_paused} of {n}  (target 0)"
    );

    let attack_at = end + 600_000;
    let horizon = attack_at + 900_000;
    let mut probing = Vec::new();
    let mut burst = Vec::new();
    let mut novel = Vec::new();
    let mut shift = Vec::new();
    for _ in 0..attacks {
        let p = profile(&mut rng);
        // Scope probing: one 403 (reading Secrets) every 2 s on top of normal traffic.
        let mut m = learned(&mut rng, &p);
        let mut obs = normal(&mut rng, &p, end, horizon);
        obs.extend((0..60).map(|i| {
            Observation::api(t0() + SignedDuration::from_millis(attack_at + i * 2000), "get", "secrets", 403)
        }));
        obs.sort_by_key(|o| o.at);
        probing.push(run(&mut m, obs, end, horizon, Sensitivity::Medium, attack_at));

        // Rate burst: twenty times the normal rate from the attack on.
        let mut m = learned(&mut rng, &p);
        let mut obs = normal(&mut rng, &p, end, attack_at);
        let loud = Profile { rate: p.rate * 20.0, ..p.clone() };
        obs.extend(normal(&mut rng, &loud, attack_at, horizon));
        burst.push(run(&mut m, obs, end, horizon, Sensitivity::Medium, attack_at));

        // Novel action, at high sensitivity.
        let mut m = learned(&mut rng, &p);
        let mut obs = normal(&mut rng, &p, end, horizon);
        let at = t0() + SignedDuration::from_millis(attack_at);
        // Asking is not drift (an approved or pending request is a record); a refused one is.
        obs.push(Observation::request(at, "disable-user", "User/alice", Decision::Denied));
        obs.sort_by_key(|o| o.at);
        novel.push(run(&mut m, obs, end, horizon, Sensitivity::High, attack_at));

        // Gradual mix shift: over ten minutes, the calls move from pods to configmaps (same rate).
        let mut m = learned(&mut rng, &p);
        let mut obs = normal(&mut rng, &p, end, attack_at);
        for step in 0..10 {
            let f = (step + 1) as f64 / 10.0;
            let shifted = Profile {
                mix: vec![
                    ("list", "pods", 0.6 * (1.0 - f)),
                    ("get", "pods", 0.25 * (1.0 - f)),
                    ("get", "configmaps", 0.1 + 0.85 * f),
                    ("get", "pods/log", 0.05),
                ],
                ..p.clone()
            };
            let from = attack_at + step * 60_000;
            obs.extend(normal(&mut rng, &shifted, from, from + 60_000));
        }
        obs.sort_by_key(|o| o.at);
        shift.push(run(&mut m, obs, end, horizon, Sensitivity::Medium, attack_at));
    }
    let mut unrecorded: Vec<Option<usize>> = Vec::new();
    for _ in 0..attacks {
        let p = profile(&mut rng);
        unrecorded.push(unrecorded_writes(&mut rng, &p, end, attack_at));
    }
    println!("attacks: {attacks} agents per pattern, starting 10 min after learning, watched 15 min");
    summary("scope probing (403s)", &probing);
    summary("rate burst (20x)", &burst);
    summary("novel action (high)", &novel);
    summary("gradual mix shift (10 min)", &shift);
    let mut through: Vec<usize> = unrecorded.iter().flatten().copied().collect();
    through.sort();
    println!(
        "{:<28} detected {:>3}/{:<3}  writes before containment: median {} max {}  (target median <= 1)",
        "unrecorded in-grant writes",
        through.len(),
        unrecorded.len(),
        through.get(through.len() / 2).map_or("-".into(), |v| v.to_string()),
        through.last().map_or("-".into(), |v| v.to_string())
    );
    println!("simulated in {:.1}s", started.elapsed().as_secs_f64());
}
