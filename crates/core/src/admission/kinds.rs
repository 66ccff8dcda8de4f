//! What a kind *is*, before anything is compared with it. A request may spell the pod it aims at
//! `Pod`, `pod`, `pods`, `po`, `v1/pods` or `pods.` — all the same resource — and an address
//! `10.0.0.7` or `::ffff:10.0.0.7`. Every kind of a target, of a protected-target selector, of a
//! parameter's `targetKind` and of a manifest's object is resolved here to one [`Kind`]: an API
//! resource (group and plural resource, as discovery serves them) or one of the few external kinds
//! (an address, an account, …). Names are canonicalised by kind ([`Kind::canonical_name`]).
//! A kind that resolves to nothing is refused, never compared as text. Pure: the runtime fills
//! [`Kinds`] from the API server's discovery.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

/// One resource the API server serves (one entry of discovery, for one group version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    /// `NetworkPolicy`
    pub kind: String,
    /// `networkpolicies`
    pub plural: String,
    /// `networkpolicy` (discovery may leave it empty: then the lower-case kind).
    pub singular: String,
    /// `netpol`
    pub short_names: Vec<String>,
    pub namespaced: bool,
}

impl Resource {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            short_names: vec![],
            namespaced,
        }
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Whether `word` names it: its kind, plural, singular or a short name, in any case.
    fn named(&self, word: &str) -> bool {
        let w = word.to_ascii_lowercase();
        w == self.kind.to_ascii_lowercase()
            || w == self.plural
            || (!self.singular.is_empty() && w == self.singular)
            || self.short_names.contains(&w)
    }
}

/// Targets that are not Kubernetes objects. Their names are canonicalised too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum External {
    /// An IPv4 or IPv6 address (an IPv4-mapped IPv6 address is its IPv4 address).
    Ip,
    /// A block of addresses.
    Cidr,
    /// An account (case-insensitive, as directories treat them).
    User,
    Group,
    /// A host or domain name (case-insensitive, without a trailing dot).
    Host,
    Domain,
    Email,
    Url,
    /// A file hash (hex, case-insensitive).
    Hash,
}

impl External {
    pub const ALL: [External; 9] = [
        External::Ip,
        External::Cidr,
        External::User,
        External::Group,
        External::Host,
        External::Domain,
        External::Email,
        External::Url,
        External::Hash,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            External::Ip => "IP",
            External::Cidr => "CIDR",
            External::User => "User",
            External::Group => "Group",
            External::Host => "Host",
            External::Domain => "Domain",
            External::Email => "Email",
            External::Url => "URL",
            External::Hash => "Hash",
        }
    }

    /// Whether it is an address kind (IP or CIDR): those match each other by containment.
    pub fn is_address(self) -> bool {
        matches!(self, External::Ip | External::Cidr)
    }

    /// Whether names of this kind compare without case.
    pub fn case_insensitive(self) -> bool {
        !matches!(self, External::Url)
    }
}

/// A resolved kind: what a comparison is made on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A Kubernetes resource: its group and plural resource identify it; `kind` is for display.
    Api {
        group: String,
        resource: String,
        kind: String,
        namespaced: bool,
    },
    External(External),
}

impl Kind {
    /// The name shown to people: `Pod`, `NetworkPolicy`, `IP`.
    pub fn display(&self) -> &str {
        match self {
            Kind::Api { kind, .. } => kind,
            Kind::External(e) => e.as_str(),
        }
    }

    /// Whether it is a Kubernetes resource that lives in a namespace.
    pub fn namespaced(&self) -> bool {
        matches!(self, Kind::Api { namespaced: true, .. })
    }

    /// Whether it is the API resource `group`/`resource` (as audit events name it).
    pub fn is_resource(&self, g: &str, r: &str) -> bool {
        matches!(self, Kind::Api { group, resource, .. } if group == g && resource == r)
    }

    /// The one spelling of `name` for this kind: addresses parsed and printed back (an IPv4-mapped
    /// IPv6 address as IPv4, a CIDR as its network), accounts, hosts and hashes in lower case. A
    /// name that is not one of this kind is an error.
    pub fn canonical_name(&self, name: &str) -> Result<String, String> {
        let e = match self {
            Kind::Api { .. } => return Ok(name.to_string()),
            Kind::External(e) => *e,
        };
        Ok(match e {
            External::Ip => canonical_ip(name)?.to_string(),
            External::Cidr => Cidr::parse(name)?.to_string(),
            External::Host | External::Domain => name.trim_end_matches('.').to_ascii_lowercase(),
            External::Url => name.to_string(),
            _ => name.to_ascii_lowercase(),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display())
    }
}

/// An address as it is compared: IPv4-mapped IPv6 addresses are their IPv4 address. Only the
/// standard notations parse (no leading zeros, no shortened or decimal IPv4, no zone).
pub fn canonical_ip(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s.trim().parse().map_err(|_| format!("{s:?} is not an IP address"))?;
    Ok(unmap(ip))
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A block of addresses, as its network address and prefix length (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/24`, `::ffff:10.0.0.0/120` (the IPv4 block `10.0.0.0/24`), or a single address
    /// (`/32`, `/128`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a CIDR block (e.g. 10.0.0.0/24)");
        let (ip, len) = match s.trim().split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s.trim(), None),
        };
        let raw: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if raw.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() <= 3 => {
                l.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        // An IPv4-mapped IPv6 block of prefix >= 96 is an IPv4 block.
        let (ip, prefix) = match raw {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => (unmap(raw), prefix - 96),
            other => (other, prefix),
        };
        Ok(Self { network: mask(ip, prefix), prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let p = self.prefix.min(other.prefix);
        self.network.is_ipv4() == other.network.is_ipv4() && mask(self.network, p) == mask(other.network, p)
    }

    /// How many addresses it holds, if at most `limit`.
    pub fn size_at_most(&self, limit: u128) -> Option<u128> {
        let bits = if self.network.is_ipv4() { 32 } else { 128 } - u32::from(self.prefix);
        if bits >= 127 {
            return None;
        }
        let n = 1u128 << bits;
        (n <= limit).then_some(n)
    }

    /// Every address it holds (call only after `size_at_most`).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let n = self.size_at_most(u128::MAX >> 1).unwrap_or(0);
        let base = to_u128(self.network);
        (0..n).map(move |i| from_u128(base + i, self.network.is_ipv4()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4((n as u32).into()) } else { IpAddr::V6(n.into()) }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let host = width - u32::from(prefix);
    let keep = if host >= 128 { 0 } else { u128::MAX << host };
    from_u128(to_u128(ip) & keep, ip.is_ipv4())
}

/// The resources the API server serves, as discovery listed them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kinds {
    resources: Vec<Resource>,
}

impl Kinds {
    pub fn new(resources: Vec<Resource>) -> Self {
        Self { resources }
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The built-in resources every supported API server serves, and SOC Warden's own: what the
    /// operator knows before its first discovery (a kind outside them is refused until then).
    pub fn builtin() -> Self {
        let r = Resource::new;
        Self::new(vec![
            r("", "v1", "Pod", "pods", true).short(&["po"]),
            r("", "v1", "Service", "services", true).short(&["svc"]),
            r("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
            r("", "v1", "Secret", "secrets", true),
            r("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
            r("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
            r("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true).short(&["pvc"]),
            r("", "v1", "Event", "events", true).short(&["ev"]),
            r("", "v1", "Namespace", "namespaces", false).short(&["ns"]),
            r("", "v1", "Node", "nodes", false).short(&["no"]),
            r("", "v1", "PersistentVolume", "persistentvolumes", false).short(&["pv"]),
            r("apps", "v1", "Deployment", "deployments", true).short(&["deploy"]),
            r("apps", "v1", "StatefulSet", "statefulsets", true).short(&["sts"]),
            r("apps", "v1", "DaemonSet", "daemonsets", true).short(&["ds"]),
            r("apps", "v1", "ReplicaSet", "replicasets", true).short(&["rs"]),
            r("batch", "v1", "Job", "jobs", true),
            r("batch", "v1", "CronJob", "cronjobs", true).short(&["cj"]),
            r("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true).short(&["netpol"]),
            r("networking.k8s.io", "v1", "Ingress", "ingresses", true).short(&["ing"]),
            r("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
            r("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
            r("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false),
            r("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false),
            r("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]),
            r("coordination.k8s.io", "v1", "Lease", "leases", true),
            r("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", true).short(&["pdb"]),
            r("socwarden.io", "v1alpha1", "SocAgent", "socagents", true).short(&["sagent"]),
            r("socwarden.io", "v1alpha1", "ActionRequest", "actionrequests", true).short(&["areq"]),
            r("socwarden.io", "v1alpha1", "Approval", "approvals", true),
            r("socwarden.io", "v1alpha1", "DriftReport", "driftreports", true),
            r("socwarden.io", "v1alpha1", "SocAction", "socactions", false).short(&["saction"]),
            r("socwarden.io", "v1alpha1", "AutonomyPolicy", "autonomypolicies", false),
            r("socwarden.io", "v1alpha1", "Notifier", "notifiers", false),
        ])
    }

    /// The short names the built-in table gives `group`/`plural` (discovery's client leaves them out).
    pub fn short_names(&self, group: &str, plural: &str) -> Vec<String> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.plural == plural)
            .map(|r| r.short_names.clone())
            .unwrap_or_default()
    }

    /// Resolves a kind as written: an external kind (`IP`, `user`), or an API resource by kind,
    /// plural, singular or short name in any case (`Pod`, `pods`, `po`), by `version/resource`
    /// (`v1/pods`), `group/version/resource` or `resource.group` (`networkpolicies.networking.k8s.io`).
    /// A word several groups serve resolves to the core group's resource, else it is ambiguous.
    /// Anything else is an error that says what was looked for.
    pub fn resolve(&self, text: &str) -> Result<Kind, String> {
        let t = text.trim();
        if let Some(e) = External::ALL.iter().find(|e| e.as_str().eq_ignore_ascii_case(t)) {
            return Ok(Kind::External(*e));
        }
        let found: Vec<&Resource> = if let Some((gv, word)) = t.rsplit_once('/') {
            let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv));
            self.resources.iter().filter(|r| r.group == group && r.version == version && r.named(word)).collect()
        } else if let Some((word, group)) = t.split_once('.') {
            // `resource.group` or `resource.version.group` (kubectl's spellings).
            let by_group =
                |g: &str| self.resources.iter().filter(|r| r.group == g && r.named(word)).collect::<Vec<_>>();
            let mut found = by_group(group);
            if found.is_empty()
                && let Some((version, g)) = group.split_once('.')
            {
                found = by_group(g).into_iter().filter(|r| r.version == version).collect();
            }
            if group.is_empty() {
                found = by_group("");
            }
            found
        } else {
            self.resources.iter().filter(|r| r.named(t)).collect()
        };
        let groups: BTreeSet<(&str, &str)> = found.iter().map(|r| (r.group.as_str(), r.plural.as_str())).collect();
        let pick = match groups.len() {
            0 => {
                return Err(format!(
                    "kind {t:?} is neither a resource this API server serves nor one of {}",
                    External::ALL.map(External::as_str).join(", ")
                ));
            }
            1 => found[0],
            _ => found.iter().find(|r| r.group.is_empty()).copied().ok_or_else(|| {
                let all: Vec<String> = groups.iter().map(|(g, r)| format!("{r}.{g}")).collect();
                format!("kind {t:?} is ambiguous ({}): name it as resource.group", all.join(", "))
            })?,
        };
        Ok(Kind::Api {
            group: pick.group.clone(),
            resource: pick.plural.clone(),
            kind: pick.kind.clone(),
            namespaced: pick.namespaced,
        })
    }

    /// How `kind` is written so that it resolves back to itself: its kind name, or `resource.group`
    /// where the name alone would resolve to another group's resource.
    pub fn spell(&self, kind: &Kind) -> String {
        match kind {
            Kind::Api { group, resource, kind: name, .. } if self.resolve(name).as_ref() != Ok(kind) => {
                format!("{resource}.{group}")
            }
            k => k.display().to_string(),
        }
    }

    /// The resource of a manifest's object: its `apiVersion` and `kind`, exactly (no other
    /// spelling is applied by the API server either).
    pub fn of_object(&self, api_version: &str, kind: &str) -> Result<Kind, String> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let r = self
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .ok_or_else(|| format!("{api_version} {kind} is not a resource this API server serves"))?;
        Ok(Kind::Api {
            group: r.group.clone(),
            resource: r.plural.clone(),
            kind: r.kind.clone(),
            namespaced: r.namespaced,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Kind {
        Kind::Api { group: "".into(), resource: "pods".into(), kind: "Pod".into(), namespaced: true }
    }

    #[test]
    fn every_spelling_of_a_kind_is_the_same_resource() {
        let k = Kinds::builtin();
        for s in ["Pod", "pod", "pods", "PODS", "po", "v1/pods", "v1/Pod", "pods.", " Pod "] {
            assert_eq!(k.resolve(s), Ok(pod()), "{s}");
        }
        let np = k.resolve("networkpolicies.networking.k8s.io").unwrap();
        assert!(np.is_resource("networking.k8s.io", "networkpolicies"));
        for s in
            ["NetworkPolicy", "netpol", "networking.k8s.io/v1/networkpolicies", "networkpolicy.v1.networking.k8s.io"]
        {
            assert_eq!(k.resolve(s).unwrap(), np, "{s}");
        }
        assert_eq!(k.resolve("Event").unwrap().to_string(), "Event", "the core group wins a shared name");
        let ev = k.resolve("events.events.k8s.io").unwrap();
        assert!(ev.is_resource("events.k8s.io", "events"));
        assert_eq!(k.spell(&ev), "events.events.k8s.io", "spelled so that it resolves back to itself");
        assert_eq!(k.spell(&np), "NetworkPolicy");
        assert!(!k.resolve("Node").unwrap().namespaced());
    }

    #[test]
    fn external_kinds_and_unknown_kinds() {
        let k = Kinds::builtin();
        assert_eq!(k.resolve("ip"), Ok(Kind::External(External::Ip)));
        assert_eq!(k.resolve("USER"), Ok(Kind::External(External::User)));
        for bad in ["Pods2", "pods/exec", "v2/pods", "apps/v1/pods", "", "podsecuritypolicies", "pods.apps"] {
            assert!(k.resolve(bad).is_err(), "{bad:?} resolves to nothing");
        }
        assert!(k.resolve("Vault").unwrap_err().contains("neither a resource"));
        let two = Kinds::new(vec![
            Resource::new("a.io", "v1", "Widget", "widgets", true),
            Resource::new("b.io", "v1", "Widget", "widgets", true),
        ]);
        assert!(two.resolve("Widget").unwrap_err().contains("ambiguous"));
        assert!(two.resolve("widgets.b.io").unwrap().is_resource("b.io", "widgets"));
    }

    #[test]
    fn addresses_have_one_spelling() {
        let ip = Kind::External(External::Ip);
        for s in ["172.20.0.7", "::ffff:172.20.0.7", "::FFFF:ac14:7", " 172.20.0.7"] {
            assert_eq!(ip.canonical_name(s).unwrap(), "172.20.0.7", "{s}");
        }
        assert_eq!(ip.canonical_name("2001:DB8:0:0::1").unwrap(), "2001:db8::1");
        for bad in ["172.020.0.7", "172.20.7", "2886991879", "0xac.20.0.7", "fe80::1%eth0", "172.20.0.7/32"] {
            assert!(ip.canonical_name(bad).is_err(), "{bad} is refused, not guessed");
        }
        let c = Cidr::parse("::ffff:10.0.0.0/120").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/24");
        assert!(c.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(c.contains("10.0.0.255".parse().unwrap()));
        assert!(!c.contains("10.0.1.0".parse().unwrap()));
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(Cidr::parse("10.0.0.0/8").unwrap().overlaps(&Cidr::parse("10.20.0.0/16").unwrap()));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().overlaps(&Cidr::parse("11.0.0.0/8").unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("10.0.0.0/+8").is_err());
        assert_eq!(Cidr::parse("10.0.0.0/30").unwrap().addresses().count(), 4);
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().size_at_most(1 << 16), None);
        let host = Kind::External(External::Host);
        assert_eq!(host.canonical_name("DC01.Corp.Example.").unwrap(), "dc01.corp.example");
        assert_eq!(Kind::External(External::User).canonical_name("Root").unwrap(), "root");
    }
}
