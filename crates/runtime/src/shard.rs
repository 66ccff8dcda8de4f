//! Agents sharded over the replicas: which replica reconciles, judges and contains an agent, and
//! decides its requests. An agent belongs to one of `count` shards by a stable hash of its
//! namespace and name (`shard_of`); each shard has its own Lease (`lease_name`) and its own fence
//! (`leader::Fence`), so a replica acts for an agent only while it holds that agent's shard, and a
//! replica that dies hands its shards to the others the way one leader hands over to a standby
//! (the lease, then the next attempt). With one shard this is the leader election of before.
//!
//! **Which replica takes which shard.** Every replica keeps a membership Lease of its own
//! (`member_name`, renewed every third of a lease). A shard's preferred holder is the live member
//! with the highest rendezvous weight for it among those below their even share (`assignment`):
//! every replica computes the same answer from the same members. A replica
//! tries a free shard at once when it is preferred, and any free shard that nobody has taken for
//! `orphan_grace` (so a shard is never left without a holder while a member's Lease is still
//! live). A holder that is not the preferred one hands the shard over (`run::shard`): it stops
//! acting, waits a third of a lease (the margin any takeover keeps for writes in flight), then
//! frees the Lease. With one shard nothing is handed over: whoever holds it keeps it.
//!
//! **All replicas must agree on the count.** Each membership Lease says the count its replica
//! runs with; a replica takes no shard while a live member says another count (a rollout that
//! changes it waits until the old replicas are gone, rather than two replicas owning an agent).

use crate::leader::{Config, Fence};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The Lease annotation where a membership Lease says how many shards its replica runs with.
pub const COUNT_ANNOTATION: &str = "socwarden.io/shards";
/// The label of membership Leases.
pub const MEMBER_LABEL: &str = "socwarden.io/member";

/// FNV-1a over `parts` joined by newlines (which no Kubernetes name holds), then a 64-bit
/// finaliser: stable across processes, builds and platforms (std's hasher is seeded per process).
/// Pure.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let sep: &[u8] = if i == 0 { b"" } else { b"\n" };
        for b in sep.iter().chain(part.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // splitmix64's finaliser: FNV's low bits alone spread short keys poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The shard of agent `namespace/name` among `count`. Pure.
pub fn shard_of(namespace: &str, name: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    (hash(&[namespace.as_bytes(), name.as_bytes()]) % count as u64) as usize
}

/// The Lease of `shard` among `count`: with one shard, the leader Lease of before.
pub fn lease_name(shard: usize, count: usize) -> String {
    if count <= 1 { crate::leader::LEASE.to_string() } else { format!("{}-{shard}-of-{count}", crate::leader::LEASE) }
}

/// The membership Lease of the replica named `identity`.
pub fn member_name(identity: &str) -> String {
    format!("soc-warden-member-{}", identity.to_ascii_lowercase())
}

/// The member that should hold `shard` of `count`, among `members` (see `assignment`). Pure.
pub fn preferred<'a>(shard: usize, count: usize, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    assignment(count, members).get(shard).copied().flatten()
}

/// Which member holds each of `count` shards: shard by shard, the member with the highest
/// rendezvous weight for it among those below their even share (`count / members`, rounded up for
/// some, down for the others). Every replica computes the same from the same members, whatever
/// their order; each member holds its share exactly, so with at least as many shards as members
/// every member holds some (a plain rendezvous hash put 6 of 9 shards on one of three replicas);
/// a member that comes or goes moves mostly the shards it wins or held. Pure.
pub fn assignment<'a>(count: usize, members: impl IntoIterator<Item = &'a str>) -> Vec<Option<&'a str>> {
    let mut members: Vec<&str> = members.into_iter().collect();
    members.sort_unstable();
    members.dedup();
    if members.is_empty() {
        return vec![None; count];
    }
    // Each member's share: `count / members`, and one more for the first `count % members` of
    // them in an order of their own hash; the shares add up to `count`, so each fills exactly.
    let m = members.len();
    let mut by_rank: Vec<usize> = (0..m).collect();
    by_rank.sort_by_key(|i| (std::cmp::Reverse(hash(&[members[*i].as_bytes(), b"share"])), *i));
    let mut room = vec![count / m; m];
    for i in by_rank.into_iter().take(count % m) {
        room[i] += 1;
    }
    (0..count)
        .map(|shard| {
            let k = shard.to_string();
            let i = (0..m)
                .filter(|i| room[*i] > 0)
                .max_by_key(|i| (hash(&[members[*i].as_bytes(), k.as_bytes()]), std::cmp::Reverse(*i)))
                .expect("room: the shares add up to the count");
            room[i] -= 1;
            Some(members[i])
        })
        .collect()
}

/// How long a free shard waits for its preferred member before any replica takes it: a fifth of
/// the lease, at most a second (a dead replica's shards are then held again within the lease plus
/// this, whichever member sees it first).
pub fn orphan_grace(lease: Duration) -> Duration {
    (lease / 5).min(Duration::from_secs(1))
}

/// A member as its Lease shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub identity: String,
    pub expires: Option<Timestamp>,
    pub count: Option<usize>,
}

impl Member {
    pub fn of(lease: &Lease) -> Option<Self> {
        let spec = lease.spec.as_ref()?;
        let identity = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
        let count =
            lease.metadata.annotations.as_ref().and_then(|a| a.get(COUNT_ANNOTATION)).and_then(|c| c.parse().ok());
        Some(Self { identity, expires: crate::leader::expires_at(spec), count })
    }

    pub fn live(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| now <= e)
    }
}

/// This replica's shards: a fence each, and where each holder's peer endpoint is.
pub struct Shards {
    fences: Vec<Arc<Fence>>,
    holders: Vec<RwLock<Option<String>>>,
    members: RwLock<Vec<Member>>,
}

impl Shards {
    pub fn new(count: usize) -> Self {
        let count = count.max(1);
        Self {
            fences: (0..count).map(|_| Arc::new(Fence::new())).collect(),
            holders: (0..count).map(|_| RwLock::new(None)).collect(),
            members: RwLock::new(Vec::new()),
        }
    }

    /// One shard held for good (no election).
    pub fn single() -> Self {
        let s = Self::new(1);
        s.fences[0].forever();
        s
    }

    pub fn count(&self) -> usize {
        self.fences.len()
    }

    pub fn of(&self, namespace: &str, name: &str) -> usize {
        shard_of(namespace, name, self.count())
    }

    pub fn fence(&self, shard: usize) -> &Arc<Fence> {
        &self.fences[shard]
    }

    /// Whether this replica acts for agent `namespace/name` now.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        self.holds(self.of(namespace, name))
    }

    pub fn holds(&self, shard: usize) -> bool {
        self.fences.get(shard).is_some_and(|f| f.holds())
    }

    /// The holder of `shard` says where its peer endpoint is (None: it says nothing, or this
    /// replica holds it).
    pub fn set_holder(&self, shard: usize, url: Option<String>) {
        *self.holders[shard].write().unwrap_or_else(|p| p.into_inner()) = url;
    }

    pub fn holder(&self, shard: usize) -> Option<String> {
        self.holders.get(shard)?.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_members(&self, members: Vec<Member>) {
        *self.members.write().unwrap_or_else(|p| p.into_inner()) = members;
    }

    /// The members live at `now`.
    pub fn live(&self, now: Timestamp) -> Vec<Member> {
        self.members.read().unwrap_or_else(|p| p.into_inner()).iter().filter(|m| m.live(now)).cloned().collect()
    }

    /// Whether `identity` is the live member that should hold `shard` (itself counted live, and
    /// members that run with another count not counted).
    pub fn prefers(&self, shard: usize, identity: &str, now: Timestamp) -> bool {
        let mut live = self.live(now);
        live.retain(|m| m.count.is_none_or(|c| c == self.count()));
        let mut names: Vec<&str> = live.iter().map(|m| m.identity.as_str()).collect();
        names.push(identity);
        preferred(shard, self.count(), names) == Some(identity)
    }

    /// A live member that runs with another shard count, if any.
    pub fn disagreeing(&self, now: Timestamp) -> Option<Member> {
        self.live(now).into_iter().find(|m| m.count.is_some_and(|c| c != self.count()))
    }
}

/// This replica stops: it acts for no shard from now on, frees the Leases of those it held, and
/// removes its membership Lease, so the others take its shards at once.
pub async fn leave(client: &Client, c: &Config, shards: &Shards) {
    for k in 0..shards.count() {
        shards.fence(k).end();
    }
    // Every Lease still naming this replica: also one being handed over, whose fence has ended.
    let frees = (0..shards.count()).map(|k| async move {
        let name = lease_name(k, shards.count());
        if let Err(e) = crate::leader::release(client, c, &name, true).await {
            tracing::warn!(error = %e, lease = %name, "could not free the lease");
        }
    });
    futures::future::join_all(frees).await;
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let _ = api.delete(&member_name(&c.identity), &Default::default()).await;
}

/// Renews this replica's membership Lease (see `shard`), saying the shard count it runs with.
pub async fn renew_member(client: &Client, c: &Config) -> kube::Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let name = member_name(&c.identity);
    let now = Timestamp::now();
    let meta = |m: ObjectMeta| {
        let mut m = m;
        m.labels.get_or_insert_with(Default::default).insert(MEMBER_LABEL.into(), "true".into());
        m.annotations.get_or_insert_with(Default::default).insert(COUNT_ANNOTATION.into(), c.shards.to_string());
        m
    };
    match api.get_opt(&name).await? {
        None => {
            let lease = Lease {
                metadata: meta(ObjectMeta {
                    name: Some(name),
                    namespace: Some(c.namespace.clone()),
                    ..Default::default()
                }),
                spec: Some(crate::leader::spec(c, None, now)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Some(mut lease) => {
            lease.spec = Some(crate::leader::spec(c, lease.spec.as_ref(), now));
            lease.metadata = meta(lease.metadata);
            api.replace(&name, &PostParams::default(), &lease).await.map(|_| ())
        }
    }
}

/// The membership Leases, and those long gone deleted (their replica's Lease ran out ten leases ago).
pub async fn members(client: &Client, c: &Config) -> kube::Result<Vec<Member>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &c.namespace);
    let leases = api.list(&kube::api::ListParams::default().labels(&format!("{}=true", MEMBER_LABEL))).await?;
    let now = Timestamp::now();
    let gone = jiff::SignedDuration::try_from(c.duration * 10).unwrap_or(jiff::SignedDuration::from_secs(150));
    let mut out = Vec::new();
    for lease in &leases.items {
        let Some(m) = Member::of(lease) else { continue };
        if m.expires.is_some_and(|e| e.checked_add(gone).is_ok_and(|g| g < now)) {
            let name = lease.metadata.name.clone().unwrap_or_default();
            let _ = api.delete(&name, &Default::default()).await;
            continue;
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn an_agents_shard_is_stable_and_the_shards_are_even() {
        // Fixed values: a change of hash would move every agent to another replica on upgrade.
        assert_eq!(shard_of("agents", "triage", 1), 0);
        let first = shard_of("agents", "triage", 3);
        assert_eq!(first, shard_of("agents", "triage", 3));
        assert_ne!(
            (0..50).map(|i| shard_of("agents", &format!("a{i}"), 3)).collect::<Vec<_>>(),
            (0..50).map(|i| shard_of("other", &format!("a{i}"), 3)).collect::<Vec<_>>(),
            "the namespace counts"
        );
        assert_ne!(shard_of("a", "bc", 1 << 20), shard_of("ab", "c", 1 << 20), "the name's bounds count");
        let mut per = [0usize; 3];
        for i in 0..30_000 {
            per[shard_of(&format!("ns-{}", i % 97), &format!("agent-{i}"), 3)] += 1;
        }
        assert!(per.iter().all(|n| (9_500..10_500).contains(n)), "10,000 ± 5% each: {per:?}");
    }

    /// Shards per member in an assignment.
    fn loads<'a>(a: &[Option<&'a str>]) -> BTreeMap<&'a str, usize> {
        a.iter().flatten().fold(BTreeMap::new(), |mut m, h| {
            *m.entry(*h).or_default() += 1;
            m
        })
    }

    #[test]
    fn every_shard_has_one_member_none_more_than_its_share_whatever_the_order() {
        for (members, count) in [(3, 9), (3, 3), (2, 1), (4, 9), (4, 5), (7, 9), (5, 256), (1, 7)] {
            let names: Vec<String> = (0..members).map(|i| format!("soc-warden-7f9c-{i}")).collect();
            let a = assignment(count, names.iter().map(String::as_str));
            assert!(a.iter().all(Option::is_some), "{members} members, {count} shards: every shard held");
            let (low, high) = (count / members, count.div_ceil(members));
            assert!(loads(&a).values().all(|n| (low..=high).contains(n)), "{members}/{count}: {:?}", loads(&a));
            if count >= members {
                assert_eq!(loads(&a).len(), members, "{members}/{count}: everyone holds some");
            }
            // Order does not matter: every replica computes the same answer.
            let reversed = assignment(count, names.iter().rev().map(String::as_str));
            assert_eq!(a, reversed);
            assert_eq!(preferred(count - 1, count, names.iter().map(String::as_str)), a[count - 1]);
        }
        assert_eq!(assignment(2, std::iter::empty()), vec![None, None]);
    }

    #[test]
    fn a_member_leaving_moves_few_shards_besides_its_own() {
        let three = ["soc-warden-a", "soc-warden-b", "soc-warden-c"];
        let before = assignment(30, three);
        let after = assignment(30, ["soc-warden-a", "soc-warden-c"]);
        let moved = (0..30).filter(|k| before[*k] != Some("soc-warden-b") && before[*k] != after[*k]).count();
        assert!(moved <= 6, "{moved} of the 20 shards the others held moved");
    }

    #[test]
    fn one_shard_is_the_leader_lease_of_before() {
        assert_eq!(lease_name(0, 1), crate::leader::LEASE);
        assert_eq!(lease_name(2, 3), "soc-warden-leader-2-of-3");
        assert_ne!(lease_name(0, 3), lease_name(0, 2), "another count, other Leases");
        assert_eq!(member_name("Pod-A"), "soc-warden-member-pod-a");
    }

    #[test]
    fn a_free_shard_waits_a_fifth_of_the_lease_at_most_a_second() {
        assert_eq!(orphan_grace(Duration::from_secs(15)), Duration::from_secs(1));
        assert_eq!(orphan_grace(Duration::from_secs(2)), Duration::from_millis(400));
    }

    #[test]
    fn only_live_members_are_preferred_and_a_replica_counts_itself() {
        let now = Timestamp::from_second(1000).unwrap();
        let s = Shards::new(8);
        let m = |id: &str, expires: i64, count: usize| Member {
            identity: id.into(),
            expires: Some(Timestamp::from_second(expires).unwrap()),
            count: Some(count),
        };
        s.set_members(vec![m("a", 1010, 8), m("b", 990, 8)]);
        assert_eq!(s.live(now).len(), 1, "b's lease ran out");
        for shard in 0..8 {
            // Before its own membership Lease is listed, a replica still counts itself.
            let pair = preferred(shard, 8, ["a", "c"]).unwrap();
            assert_eq!(s.prefers(shard, "c", now), pair == "c");
            assert!(s.prefers(shard, "a", now), "a is the only live member");
        }
        assert_eq!(s.disagreeing(now), None);
        s.set_members(vec![m("a", 1010, 8), m("old", 1010, 1)]);
        assert_eq!(s.disagreeing(now).map(|m| m.identity), Some("old".into()));
        // A member with another count never holds these shards: nothing is handed to it.
        assert!((0..8).all(|shard| s.prefers(shard, "a", now)));
    }
}
