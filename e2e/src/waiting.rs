//! Waiting for conditions (`wait_for`, on one agent, on many agents), the agent status
//! predicates they take (`condition`, `ready`), and small generic parsers (`metric`, `yaml_docs`).

use anyhow::{Result, bail};
use futures::StreamExt;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde::Deserialize;
use socwarden_api::SocAgent;
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `f` every 100 ms until it returns `Some`, or fails after `timeout` saying what it waited for.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what} (last error: {last_err:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status condition `type_` of an agent, once the operator wrote it.
pub fn condition(a: &SocAgent, type_: &str) -> Option<socwarden_api::Condition> {
    a.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).cloned()
}

pub fn ready(a: &SocAgent) -> bool {
    condition(a, "Ready").is_some_and(|c| c.status == "True")
        && a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation
}

/// Waits until the agent satisfies `pred`, returning it.
pub async fn wait_agent(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&SocAgent) -> bool,
) -> Result<SocAgent> {
    let api: Api<SocAgent> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("agent {ns}/{name}: {what}"), timeout, || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let a = api.get_opt(name).await?;
            Ok(a.filter(|a| pred(a)))
        }
    })
    .await
}

/// Polls the DriftReport of agent `ns/name` until `pred` holds.
pub async fn wait_report(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&socwarden_api::DriftReportStatus) -> bool,
) -> Result<socwarden_api::DriftReportStatus> {
    let api: Api<socwarden_api::DriftReport> = Api::namespaced(client.clone(), ns);
    wait_for(&format!("drift report {ns}/{name}: {what}"), timeout, || {
        let api = api.clone();
        let pred = &pred;
        async move {
            let r = api.get_opt(name).await?;
            Ok(r.and_then(|r| r.status).filter(|s| pred(s)))
        }
    })
    .await
}

/// Watches until `n` agents in `namespaces` satisfy `pred`; returns the elapsed time.
pub async fn wait_all_agents(
    client: &Client,
    label: &str,
    n: usize,
    pred: fn(&SocAgent) -> bool,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let api: Api<SocAgent> = Api::all(client.clone());
    let wc = kube::runtime::watcher::Config::default().labels(label);
    let mut done = std::collections::HashSet::new();
    let mut stream = std::pin::pin!(kube::runtime::watcher(api, wc).default_backoff_applied());
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => bail!("only {} of {n} agents ready after {timeout:?}", done.len()),
            ev = stream.next() => {
                let Some(ev) = ev else { bail!("watch ended") };
                let a = ev?;
                let key = format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any());
                if pred(&a) { done.insert(key); } else { done.remove(&key); }
                if done.len() >= n { return Ok(start.elapsed()); }
            }
        }
    }
}

trait AppliedObjects:
    futures::Stream<Item = Result<kube::runtime::watcher::Event<SocAgent>, kube::runtime::watcher::Error>> + Sized
{
    fn default_backoff_applied(self) -> impl futures::Stream<Item = Result<SocAgent, kube::runtime::watcher::Error>> {
        use kube::runtime::WatchStreamExt;
        self.default_backoff().applied_objects()
    }
}
impl<S> AppliedObjects for S where
    S: futures::Stream<Item = Result<kube::runtime::watcher::Event<SocAgent>, kube::runtime::watcher::Error>>
{
}

/// The value of a metric line `name{labels} value` (first match with all `labels`).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name || !labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
            return None;
        }
        value.parse().ok()
    })
}

/// The documents of a multi-document YAML stream (empty ones dropped).
pub fn yaml_docs(yaml: &str) -> Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v = serde_json::Value::deserialize(doc)?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}
