//! Delivering notices to the Notifier sinks. Which decisions are notices, which sink takes which,
//! and what each is sent is `socwarden_core::notify`; here each decision handed over by the
//! decision log (`DecisionLog::with_notices`) becomes a `Notice` filled in from the caches (risk,
//! effect, approvers, deadline), and goes into the outbox of each matching sink (`core::outbox`:
//! urgent notices first, a flood of routine ones bounded). One worker per sink delivers its outbox
//! one notice at a time: signed, with an `Idempotency-Key` that stays the same across retries; a
//! failed try makes the sink wait (`outbox::retry`) before the next, and a notice out of tries is
//! counted dead. Nothing here ever holds a decision.

use crate::context::Context;
use crate::decisionlog::Tell;
use crate::execute;
use crate::watch;
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use socwarden_api::{NoticeFormat, Notifier, NotifierSpec};
use socwarden_core::decisionlog::Entry;
use socwarden_core::notify::{self, Notice};
use socwarden_core::outbox::{self, Outbox};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Notices waiting for delivery; beyond this, new ones are dropped and counted.
pub const QUEUE: usize = 1024;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn channel() -> (mpsc::Sender<Tell>, mpsc::Receiver<Tell>) {
    mpsc::channel(QUEUE)
}

/// A cache of the Notifiers and the future that keeps it current.
pub fn notifiers(
    client: kube::Client,
    metrics: crate::metrics::Metrics,
    restarts: watch::Restarts,
) -> (Store<Notifier>, impl std::future::Future<Output = ()> + Send + 'static) {
    let (reader, writer) = reflector::store();
    let stream = watch::watch::<Notifier>(client, metrics, restarts).reflect(writer);
    (reader, stream.for_each(|_| futures::future::ready(())))
}

/// One sink's outbox and the wake-up of its worker.
#[derive(Default)]
struct Sink {
    outbox: std::sync::Mutex<Outbox<Notice>>,
    wake: tokio::sync::Notify,
}

/// Hands every notice to the outbox of every sink that takes it.
pub async fn run(mut rx: mpsc::Receiver<Tell>, ctx: Arc<Context>, notifiers: Store<Notifier>) {
    let mut outboxes: HashMap<String, Arc<Sink>> = HashMap::new();
    while let Some(t) = rx.recv().await {
        let sinks = notifiers.state();
        if sinks.is_empty() {
            continue;
        }
        let notice = notice_of(&t.entry, t.status.as_deref(), &ctx);
        for n in sinks {
            if let Some(why) = watch::malformed(n.as_ref()) {
                tracing::warn!(notifier = %n.name_any(), %why, "malformed Notifier: skipped");
                continue;
            }
            // Its status says what to fix (condition Valid); sending would only fail.
            if !notify::problems(&n.spec).is_empty() || !notify::routes(&n.spec, &notice) {
                continue;
            }
            let name = n.name_any();
            let sink = outboxes.entry(name.clone()).or_insert_with(|| {
                let sink = Arc::new(Sink::default());
                tokio::spawn(worker(ctx.clone(), name.clone(), sink.clone(), notifiers.clone()));
                sink
            });
            let dropped =
                sink.outbox.lock().unwrap_or_else(|p| p.into_inner()).push(notice.clone(), outbox::urgent(notice.kind));
            if let Some(d) = dropped {
                ctx.metrics.notifications.with_label_values(&[&name, "dropped"]).inc();
                tracing::warn!(notifier = %name, notice = d.kind.map(|k| k.as_str()).unwrap_or_default(), "outbox full: oldest notice of its class dropped");
            }
            sink.wake.notify_one();
        }
    }
}

/// Delivers the outbox of sink `name`, one notice at a time, urgent ones first; after a failed
/// try the whole sink waits before the next one. Counts each outcome.
async fn worker(ctx: Arc<Context>, name: String, sink: Arc<Sink>, notifiers: Store<Notifier>) {
    let mut wait: Option<Duration> = None;
    loop {
        if let Some(w) = wait.take() {
            tokio::time::sleep(w).await;
        }
        let next = sink.outbox.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut item) = next else {
            sink.wake.notified().await;
            continue;
        };
        // The Notifier as it is now: deleted, its notices go with it.
        let Some(n) = notifiers.get(&ObjectRef::new(&name)) else { continue };
        let notice = &item.notice;
        let body =
            serde_json::to_vec(&notify::body(n.spec.format, notice, n.spec.console_url.as_deref())).unwrap_or_default();
        let key = notify::idempotency_key(&name, notice);
        let kind = notice.kind.map(|k| k.as_str()).unwrap_or_default();
        match send(&ctx, &n.spec, &key, kind, body).await {
            Ok(_) => ctx.metrics.notifications.with_label_values(&[&name, "delivered"]).inc(),
            Err(e) => {
                item.attempts += 1;
                match outbox::retry(item.urgent, item.attempts) {
                    Some(w) => {
                        ctx.metrics.notifications.with_label_values(&[&name, "retried"]).inc();
                        tracing::warn!(notifier = %name, notice = kind, error = %e, retry_in = ?w, "notice not delivered");
                        sink.outbox.lock().unwrap_or_else(|p| p.into_inner()).again(item);
                        wait = Some(w);
                    }
                    None => {
                        ctx.metrics.notifications.with_label_values(&[&name, "dead"]).inc();
                        tracing::error!(notifier = %name, notice = kind, error = %e, idempotency_key = %key, "notice given up");
                    }
                }
            }
        }
    }
}

/// The notice a decision-log entry is, with what the caches add: the action's risk, the request's
/// effect, quorum and deadline (from `status` when given), and the agent's approvers.
fn notice_of(e: &Entry, status: Option<&socwarden_api::ActionRequestStatus>, ctx: &Context) -> Notice {
    let mut n = Notice {
        kind: notify::notice_kind(e),
        time: e.time.clone(),
        namespace: e.namespace.clone(),
        agent: e.agent.clone(),
        request: e.request.clone(),
        action: e.action.clone(),
        decision: e.decision,
        message: e.message.clone(),
        approved_by: e.approvers.clone(),
        ..Default::default()
    };
    if let Some(a) = ctx.stores.agents.get(&ObjectRef::new(&e.agent).within(&e.namespace)) {
        n.approver_users = a.spec.approvers.users.clone();
        n.approver_groups = a.spec.approvers.groups.clone();
    }
    if let Some(action) = e.action.as_deref().and_then(|a| ctx.stores.action(a)) {
        n.risk = Some(action.spec.risk);
    }
    let cached = e.request.as_deref().and_then(|r| ctx.stores.requests.get(&ObjectRef::new(r).within(&e.namespace)));
    if let Some(status) = status.or(cached.as_ref().and_then(|r| r.status.as_ref())) {
        n.effect = status.effect.iter().map(ToString::to_string).collect();
        n.required_approvals = status.required_approvals;
        if n.kind == Some(socwarden_api::NoticeKind::RequestPending) {
            n.deadline = status.expires_at.clone();
            n.approved_by = status.approvals.iter().map(|a| a.approver.clone()).collect();
        }
        // What the notice shows is the request with the action content it was decided on: its
        // command and link approve exactly that.
        if matches!(
            n.kind,
            Some(socwarden_api::NoticeKind::RequestPending | socwarden_api::NoticeKind::RequestExpiring)
        ) && let (Some(r), Some(hash)) = (cached.as_ref(), status.action_hash.as_deref())
        {
            n.content = Some(socwarden_core::admission::signature::approved_content(&r.spec, hash));
        }
    }
    n
}

/// One delivery: the URL and the key read from their Secrets each time (a rotated Secret is used
/// at once), the body signed when there is a key.
async fn send(ctx: &Context, spec: &NotifierSpec, key: &str, kind: &str, body: Vec<u8>) -> Result<u16, execute::Error> {
    let url = match (&spec.url, &spec.url_secret_ref) {
        (Some(u), _) => u.clone(),
        (None, Some(r)) => {
            let raw = execute::secret_value(&ctx.client, &ctx.namespace, r).await?;
            String::from_utf8(raw)
                .map_err(|_| execute::Error::Invalid("urlSecretRef: not UTF-8".into()))?
                .trim()
                .to_string()
        }
        (None, None) => return Err(execute::Error::Invalid("the Notifier has neither url nor urlSecretRef".into())),
    };
    let mut headers = vec![("idempotency-key", key.to_string()), ("x-soc-warden-event", kind.to_string())];
    match &spec.secret_ref {
        Some(r) => {
            let hmac = execute::secret_value(&ctx.client, &ctx.namespace, r).await?;
            headers.push(("x-soc-warden-signature", execute::http_signature(&hmac, &body)));
        }
        None if spec.format == NoticeFormat::Webhook => {
            return Err(execute::Error::Invalid("a webhook Notifier needs secretRef (its HMAC key)".into()));
        }
        None => {}
    }
    execute::post(&url, spec.ca_bundle.as_deref(), TIMEOUT, &headers, body).await
}
