//! `kubectl warden`: the approval queue and the everyday decisions of a security lead, from a
//! terminal. Every command acts as the user of the current kubeconfig: approvals are stamped with
//! that identity by the admission webhook, whatever this tool sends.

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use socwarden_api::conditions::reason;
use socwarden_api::{ActionRequest, Approval, Decision, DriftReport, SocAction, SocAgent, Tier};
use socwarden_core::admission::signature;

mod console;
mod whoami;

/// Work the SOC Warden approval queue and the agents' autonomy from the command line.
///
/// Examples:
///   kubectl warden pending -A
///   kubectl warden approve isolate-web-1 -n soc-agents          (shows what runs, and its content hash)
///   kubectl warden approve isolate-web-1 -n soc-agents --seen <hash> --comment "confirmed in the EDR"
///   kubectl warden explain triage-bot -n soc-agents
#[derive(Parser)]
#[command(name = "kubectl-warden", version, verbatim_doc_comment)]
struct Cli {
    /// Namespace (default: the kubeconfig's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the ActionRequests waiting for approval, oldest first.
    Pending {
        /// In every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Approve an ActionRequest (you must be one of the agent's approvers, and not its requester).
    /// Without --seen it shows what would run and its content hash, and approves nothing; with
    /// --seen it approves exactly that content (refused if the action changed since).
    Approve {
        /// The ActionRequest's name.
        request: String,
        /// The content hash you reviewed (printed by `pending` and by `approve` without it).
        #[arg(long)]
        seen: Option<String>,
        /// Kept with the Approval (why you decided so).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny an ActionRequest: one deny decides.
    Deny {
        /// The ActionRequest's name.
        request: String,
        /// Kept with the Approval (why you decided so).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Pause an agent at once (sets spec.paused): credentials revoked, workload scaled to zero.
    Pause {
        /// The SocAgent's name.
        agent: String,
    },
    /// Resume an agent: lifts a manual pause, or approves lifting a drift pause.
    Resume {
        /// The SocAgent's name.
        agent: String,
        /// Kept with the Approval (why you decided so).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Approve the promotion of an agent to the next tier (the tier itself is raised in Git).
    Promote {
        /// The SocAgent's name.
        agent: String,
        /// Kept with the Approval (why you decided so).
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Say in plain words why an agent is paused, what its promotion waits for, what it may do.
    Explain {
        /// The SocAgent's name.
        agent: String,
    },
    /// Who you are, as the API server authenticates you (the name approvals are stamped with),
    /// and the agents you approve for.
    Whoami {
        /// Look for agents in every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
    /// Open the approval console: a local web page (127.0.0.1 only) acting as you, with the queue,
    /// the fleet, each agent and each request; approve or deny from the browser.
    Console {
        /// The port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Show every namespace (default: --namespace, or the kubeconfig's).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
    },
}

fn age(t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    let Some(t) = t else { return "-".into() };
    let secs = Timestamp::now().duration_since(t.0).as_secs().max(0) as u64;
    socwarden_api::duration::format(std::time::Duration::from_secs(secs))
}

fn short_name(prefix: &str, of: &str) -> String {
    let mut n = format!("{prefix}-{of}");
    n.truncate(50);
    format!("{}-", n.trim_end_matches('-'))
}

/// Creates an Approval as the kubeconfig's user (the webhook stamps who that is). `dry_run`: only
/// asks whether it would be accepted (the webhook runs its full check and stamps it, nothing is kept).
async fn approval(
    client: &Client,
    ns: &str,
    prefix: &str,
    of: &str,
    spec: serde_json::Value,
    dry_run: bool,
) -> Result<Approval> {
    let a: Approval = serde_json::from_value(json!({
        "apiVersion": "socwarden.io/v1alpha1", "kind": "Approval",
        "metadata": {"generateName": short_name(prefix, of), "namespace": ns},
        "spec": spec
    }))?;
    let params = PostParams { dry_run, ..Default::default() };
    match Api::<Approval>::namespaced(client.clone(), ns).create(&params, &a).await {
        Ok(a) => Ok(a),
        Err(kube::Error::Api(e)) => bail!("refused: {}", e.message),
        Err(e) => Err(e.into()),
    }
}

/// The command that approves exactly the content `seen` of request `ns/name`.
fn approve_command(ns: &str, name: &str, seen: &str) -> String {
    format!("kubectl warden approve {name} -n {ns} --seen {seen}")
}

/// The SocAction a request names, as the user reads it (None: it cannot be read).
async fn action_of(client: &Client, r: &ActionRequest) -> Option<SocAction> {
    Api::<SocAction>::all(client.clone()).get_opt(&r.spec.action).await.ok().flatten()
}

/// Shows what approving `request` would approve — the request, what its execution runs (the
/// executor's rendering) and its content hash — and whether the webhook would accept your
/// approval (a dry run); approves nothing. The hash is what `approve --seen` then approves.
async fn review(client: &Client, ns: &str, request: &str) -> Result<String> {
    let r = match Api::<ActionRequest>::namespaced(client.clone(), ns).get(request).await {
        Ok(r) => r,
        Err(kube::Error::Api(e)) => bail!("refused: {}", e.message),
        Err(e) => return Err(e.into()),
    };
    let Some(action) = action_of(client, &r).await else {
        bail!("SocAction {} cannot be read, so its content cannot be shown: nothing to approve", r.spec.action)
    };
    let seen = signature::request_content(&r.spec, &action.spec);
    let spec = json!({"actionRequest": request, "decision": "approve", "seen": seen});
    approval(client, ns, "approve", request, spec, true).await?;
    let t = &r.spec.target;
    let mut out = vec![format!(
        "ActionRequest {request} in {ns}: {} asks to run {} ({} risk) on {} {}{}",
        r.spec.agent,
        r.spec.action,
        action.spec.risk,
        t.kind,
        t.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
        t.name
    )];
    out.push(format!("  parameters: {}", serde_json::to_string(&r.spec.parameters).unwrap_or_default()));
    out.push(format!("  justification (the agent's own words, untrusted): {}", r.spec.justification));
    for o in r.status.as_ref().map(|s| s.effect.as_slice()).unwrap_or_default() {
        out.push(format!("  touches {o}"));
    }
    let runs = console::view::what_runs(&r, Some(&action));
    out.push(format!("  what runs ({}):", runs["kind"].as_str().unwrap_or_default()));
    out.extend(runs["text"].as_str().unwrap_or_default().lines().map(|l| format!("    {l}")));
    out.push(format!("  content {seen}"));
    out.push(format!(
        "You may approve it. To approve exactly this content, run:\n  {}",
        approve_command(ns, request, &seen)
    ));
    Ok(out.join("\n"))
}

async fn pending(client: &Client, ns: &str, all: bool) -> Result<()> {
    let api: Api<ActionRequest> = if all { Api::all(client.clone()) } else { Api::namespaced(client.clone(), ns) };
    let mut items: Vec<ActionRequest> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.status.as_ref().and_then(|s| s.decision) == Some(Decision::Pending))
        .collect();
    items.sort_by_key(|r| r.metadata.creation_timestamp.as_ref().map(|t| t.0));
    if items.is_empty() {
        println!("No ActionRequests are waiting for approval.");
        return Ok(());
    }
    // Read once, as the user: what each listed request's content is computed with.
    let catalog =
        Api::<SocAction>::all(client.clone()).list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    println!(
        "{:<16} {:<28} {:<16} {:<16} {:<28} {:<9} {:<6} EXPIRES IN",
        "NAMESPACE", "REQUEST", "AGENT", "ACTION", "TARGET", "APPROVED", "AGE"
    );
    for r in items {
        let s = r.status.clone().unwrap_or_default();
        let target = format!("{}/{}", r.spec.target.kind, r.spec.target.name);
        let expires = s
            .expires_at
            .as_deref()
            .and_then(|e| e.parse::<Timestamp>().ok())
            .map(|e| {
                socwarden_api::duration::format(std::time::Duration::from_secs(
                    e.duration_since(Timestamp::now()).as_secs().max(0) as u64,
                ))
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<16} {:<28} {:<16} {:<16} {:<28} {:<9} {:<6} {}",
            r.namespace().unwrap_or_default(),
            r.name_any(),
            r.spec.agent,
            r.spec.action,
            target,
            format!("{}/{}", s.approvals.len(), s.required_approvals.unwrap_or(1)),
            age(r.metadata.creation_timestamp.as_ref()),
            expires
        );
        // What an approval will touch, object by object.
        for o in &s.effect {
            println!("    touches {o}");
        }
        // The content listed now, and the command that approves exactly it.
        match catalog.iter().find(|a| a.metadata.name.as_deref() == Some(r.spec.action.as_str())) {
            Some(a) => {
                let seen = signature::request_content(&r.spec, &a.spec);
                println!("    approve: {}", approve_command(&r.namespace().unwrap_or_default(), &r.name_any(), &seen));
            }
            None => println!("    SocAction {} cannot be read: its content cannot be shown", r.spec.action),
        }
    }
    Ok(())
}

/// Sets or clears spec.paused, as the user; a refusal says why (the webhook's or RBAC's words).
async fn set_paused(client: &Client, ns: &str, agent: &str, paused: bool) -> Result<()> {
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), ns);
    match agents.patch(agent, &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": paused}}))).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => bail!("refused: {}", e.message),
        Err(e) => Err(e.into()),
    }
}

/// Pauses an agent at once (sets spec.paused), as the user: needs `patch` and `pause` on socagents.
async fn pause(client: &Client, ns: &str, agent: &str) -> Result<String> {
    set_paused(client, ns, agent, true).await?;
    Ok(format!("{agent}: spec.paused set; its credentials are being revoked"))
}

/// Lifts a pause the user may lift: a manual one by clearing spec.paused, a drift one with an
/// approval of the resume (an approver's); a kill-switch pause only with the kill switch.
async fn resume(client: &Client, ns: &str, agent: &str, comment: &str) -> Result<String> {
    let agents: Api<SocAgent> = Api::namespaced(client.clone(), ns);
    let a = agents.get(agent).await?;
    match a.status.as_ref().and_then(|s| s.pause.clone()) {
        Some(p) if p.reason == reason::DRIFT => {
            let ap = resume_approval(client, ns, agent, &p.id, comment, false).await?;
            Ok(format!("approval {} lifts the drift pause {} of {agent}, as {}", ap.name_any(), p.id, ap.spec.approver))
        }
        Some(p) if p.reason == reason::KILL_SWITCH => {
            bail!("{agent} is paused by the kill switch: set killSwitch to false on the AutonomyPolicy")
        }
        _ if a.spec.paused => {
            set_paused(client, ns, agent, false).await?;
            Ok(format!("{agent}: spec.paused cleared; fresh credentials are being issued"))
        }
        _ => Ok(format!("{agent} is not paused")),
    }
}

/// An approver's approval of lifting the drift pause `pause_id` of an agent; `dry_run` only asks
/// whether it would be accepted.
async fn resume_approval(
    client: &Client,
    ns: &str,
    agent: &str,
    pause_id: &str,
    comment: &str,
    dry_run: bool,
) -> Result<Approval> {
    let spec = json!({"resume": {"agent": agent, "pauseId": pause_id}, "decision": "approve", "comment": comment});
    approval(client, ns, "resume", agent, spec, dry_run).await
}

/// Approves the promotion of an agent to the tier above the one enforced (the tier itself is
/// raised in Git); `dry_run` only asks whether the approval would be accepted.
async fn promotion_approval(
    client: &Client,
    ns: &str,
    agent: &str,
    comment: &str,
    dry_run: bool,
) -> Result<(Approval, Tier, Tier)> {
    let a = Api::<SocAgent>::namespaced(client.clone(), ns).get(agent).await?;
    let current = a.status.as_ref().and_then(|s| s.effective_tier).unwrap_or(Tier::Observe);
    let Some(next) = current.next() else { bail!("{agent} is already at the highest tier") };
    let spec = json!({"promotion": {"agent": agent, "tier": next}, "decision": "approve", "comment": comment});
    let ap = approval(client, ns, "promote", agent, spec, dry_run).await?;
    Ok((ap, current, a.spec.tier))
}

async fn promote(client: &Client, ns: &str, agent: &str, comment: &str) -> Result<String> {
    let (ap, current, declared) = promotion_approval(client, ns, agent, comment, false).await?;
    let next = current.next().unwrap_or(current);
    let mut out =
        format!("approval {} for promoting {agent} {current} → {next}, as {}", ap.name_any(), ap.spec.approver);
    if declared < next {
        out.push_str(&format!(
            "\nnote: spec.tier is still {declared}; the promotion takes effect once it is raised (in Git) and every rule holds"
        ));
    }
    Ok(out)
}

fn explain(a: &SocAgent, report: Option<&DriftReport>, requests: &[ActionRequest]) -> String {
    let mut out = Vec::new();
    let s = a.status.clone().unwrap_or_default();
    let name = format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any());
    let cond = |t: &str| s.conditions.iter().find(|c| c.type_ == t && c.status == "True").cloned();
    match s.phase {
        Some(p) => out.push(format!("{name} is {}.", p.as_str())),
        None => out.push(format!("{name} has not been reconciled yet (is the operator running?).")),
    }
    if let Some(p) = &s.pause {
        out.push(format!("It is paused ({}) since {}.", p.reason, p.since));
        if let Some(c) = cond("Paused") {
            out.push(format!("Why: {}", c.message));
        }
        match p.reason.as_str() {
            "Drift" => out.push(format!(
                "To resume it, one of its approvers runs: kubectl warden resume {} -n {}",
                a.name_any(),
                a.namespace().unwrap_or_default()
            )),
            "Manual" => out.push("To resume it: kubectl warden resume (sets spec.paused to false).".into()),
            _ => out.push("It resumes when the kill switch is set back to false on the AutonomyPolicy.".into()),
        }
    }
    if let Some(c) = cond("InvalidSpec") {
        out.push(format!("Its spec is invalid, so it holds no action grants: {}", c.message));
    }
    let declared = a.spec.tier;
    let effective = s.effective_tier.unwrap_or(Tier::Observe);
    out.push(format!("Declared tier: {declared}; enforced tier: {effective}."));
    if let Some(c) = cond("PromotionPending") {
        out.push(format!("Its promotion waits: {}", c.message));
        if let Some(sh) = &s.shadow {
            out.push(format!("Shadow evidence: {} human decisions, {} approving.", sh.decisions, sh.agreed));
        }
    }
    if !s.autonomous_actions.is_empty() || !s.gated_actions.is_empty() {
        out.push(format!(
            "Runs without approval: [{}]; needs approval: [{}].",
            s.autonomous_actions.join(", "),
            s.gated_actions.join(", ")
        ));
    }
    match report.and_then(|r| r.status.as_ref()) {
        Some(r) => {
            if let Some(d) = &r.drift {
                let mut line =
                    format!("Behaviour: {:?}, drift score {:.2} (acts at {:.2}).", d.state, d.score, d.threshold);
                for sig in &d.signals {
                    line.push_str(&format!(" {}: {} (expected {}).", sig.signal, sig.observed, sig.expected));
                }
                out.push(line);
            }
            for b in &r.bounds {
                out.push(format!("Baseline bound reached: {b}."));
            }
        }
        None => out.push("No DriftReport (no behaviour observed yet, or you may not read it).".into()),
    }
    for r in requests {
        let st = r.status.clone().unwrap_or_default();
        let t = &r.spec.target;
        let mut line = format!(
            "Request {} ({} → {} {}{}): {}",
            r.name_any(),
            r.spec.action,
            t.kind,
            t.namespace.as_deref().map(|n| format!("{n}/")).unwrap_or_default(),
            t.name,
            st.decision.map(|d| d.as_str()).unwrap_or("undecided"),
        );
        if let Some(e) = &st.execution {
            if let Some(state) = e.state {
                line.push_str(&format!("; {}: {}", state.as_str(), e.result));
            }
            for p in &e.performed {
                line.push_str(&format!("\n  did: {p} at {}", p.at));
            }
        }
        out.push(line);
    }
    if let Some(c) = &s.credentials {
        match &c.expires_at {
            Some(e) => out.push(format!("Its token is in Secret {} and expires at {e}.", c.secret_name)),
            None => out.push("It holds no token.".into()),
        }
    }
    out.join("\n")
}

/// Who the user is and the agents (of `ns`, or every namespace) whose approvers include them.
async fn whoami(client: &Client, ns: &str, all_namespaces: bool) -> Result<String> {
    let me = whoami::whoami(client).await?;
    let api = if all_namespaces { Api::<SocAgent>::all(client.clone()) } else { Api::namespaced(client.clone(), ns) };
    let agents = api.list(&ListParams::default()).await.map(|l| l.items);
    Ok(whoami_text(&me, agents.as_deref().map_err(|e| e.to_string()), if all_namespaces { None } else { Some(ns) }))
}

/// What `whoami` prints: the user, its groups, its token (a ServiceAccount's), and the agents it
/// approves for (the webhook's own rule, `approvals::is_approver`) — or why they cannot be listed.
fn whoami_text(me: &whoami::Me, agents: Result<&[SocAgent], String>, ns: Option<&str>) -> String {
    let mut out = vec![me.user.clone()];
    if !me.groups.is_empty() {
        out.push(format!("groups: {}", me.groups.join(", ")));
    }
    if let Some(id) = me.credential {
        out.push(format!("token: {id}"));
    }
    let scope = ns.map(|n| format!("in namespace {n}")).unwrap_or_else(|| "in any namespace".into());
    match agents {
        Err(e) => out.push(format!("approver of: SocAgents {scope} cannot be listed ({e})")),
        Ok(agents) => {
            let mine: Vec<String> = agents
                .iter()
                .filter(|a| socwarden_core::admission::approvals::is_approver(a, &me.user, &me.groups))
                .map(|a| format!("{}/{}", a.namespace().unwrap_or_default(), a.name_any()))
                .collect();
            if mine.is_empty() {
                out.push(format!("approver of: no agent {scope}"));
            } else {
                out.push(format!("approver of: {}", mine.join(", ")));
            }
        }
    }
    out.join("\n")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let client = Client::try_default().await.context("reading the kubeconfig")?;
    let ns = cli.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
    match cli.command {
        Command::Pending { all_namespaces } => pending(&client, &ns, all_namespaces).await?,
        Command::Approve { request, seen: None, .. } => {
            println!("{}", review(&client, &ns, &request).await?);
            bail!("nothing approved yet: review what runs above, then approve it with --seen");
        }
        Command::Approve { request, seen: Some(seen), comment } => {
            let a = approval(
                &client,
                &ns,
                "approve",
                &request,
                json!({"actionRequest": request, "decision": "approve", "seen": seen, "comment": comment}),
                false,
            )
            .await?;
            println!("approval {} recorded for {request} (content {seen}), as {}", a.name_any(), a.spec.approver);
        }
        Command::Deny { request, comment } => {
            let a = approval(
                &client,
                &ns,
                "deny",
                &request,
                json!({"actionRequest": request, "decision": "deny", "comment": comment}),
                false,
            )
            .await?;
            println!("denial {} recorded for {request}, as {}", a.name_any(), a.spec.approver);
        }
        Command::Pause { agent } => println!("{}", pause(&client, &ns, &agent).await?),
        Command::Resume { agent, comment } => println!("{}", resume(&client, &ns, &agent, &comment).await?),
        Command::Promote { agent, comment } => println!("{}", promote(&client, &ns, &agent, &comment).await?),
        Command::Explain { agent } => {
            let a = Api::<SocAgent>::namespaced(client.clone(), &ns).get(&agent).await?;
            // People with the right read the DriftReport; anyone else is told it is not readable.
            let report = Api::<DriftReport>::namespaced(client.clone(), &ns).get_opt(&agent).await.ok().flatten();
            let mut requests: Vec<ActionRequest> = Api::<ActionRequest>::namespaced(client.clone(), &ns)
                .list(&Default::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r.spec.agent == agent)
                .collect();
            requests.sort_by_key(|r| std::cmp::Reverse(r.metadata.creation_timestamp.clone()));
            requests.truncate(5);
            println!("{}", explain(&a, report.as_ref(), &requests))
        }
        Command::Whoami { all_namespaces } => println!("{}", whoami(&client, &ns, all_namespaces).await?),
        Command::Console { port, all_namespaces } => {
            let namespace = (!all_namespaces).then(|| ns.clone());
            console::run(client, console::Options { port, namespace }).await?
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socwarden_core::testing;

    #[test]
    fn whoami_names_the_user_and_the_agents_it_approves_for() {
        // Agent `bot` in `agents`: approvers user `alice` and group `leads`.
        let bot = testing::agent(Tier::Supervised);
        let me = |user: &str, groups: &[&str]| whoami::Me {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential: None,
        };
        let lead = me("lead-a", &["leads", "system:authenticated"]);
        let text = whoami_text(&lead, Ok(std::slice::from_ref(&bot)), Some("agents"));
        assert_eq!(text, "lead-a\ngroups: leads, system:authenticated\napprover of: agents/bot");
        let text = whoami_text(&me("alice", &[]), Ok(std::slice::from_ref(&bot)), None);
        assert_eq!(text, "alice\napprover of: agents/bot", "by name");
        let text = whoami_text(&me("analyst", &["analysts"]), Ok(std::slice::from_ref(&bot)), Some("agents"));
        assert!(text.ends_with("approver of: no agent in namespace agents"), "{text}");
        let text = whoami_text(&lead, Err("forbidden".into()), None);
        assert!(text.ends_with("SocAgents in any namespace cannot be listed (forbidden)"), "{text}");
        let ci = whoami::Me {
            credential: socwarden_core::admission::identity::CredentialId::parse(
                "JTI=0f8fad5b-d9cb-469f-a165-70867728950e",
            ),
            ..me("system:serviceaccount:ci:deployer", &[])
        };
        let text = whoami_text(&ci, Ok(&[]), Some("ci"));
        assert!(text.contains("\ntoken: JTI=0f8fad5b-d9cb-469f-a165-70867728950e\n"), "{text}");
    }
}

#[cfg(test)]
mod reference {
    /// The commands section of `docs/reference/kubectl-warden.md`, from the command line itself.
    #[test]
    fn the_commands_reference_is_generated_from_the_command_line() {
        use clap::CommandFactory;
        let mut cli = super::Cli::command();
        cli.build();
        let mut page = String::new();
        for cmd in cli.get_subcommands().filter(|c| c.get_name() != "help") {
            let positional: Vec<String> =
                cmd.get_positionals().map(|a| format!("<{}>", a.get_id().as_str().to_uppercase())).collect();
            let about = cmd.get_long_about().or(cmd.get_about()).map(|a| a.to_string()).unwrap_or_default();
            let usage = format!("kubectl warden {} {}", cmd.get_name(), positional.join(" "));
            page.push_str(&format!("\n### `{}`\n\n{about}\n\n", usage.trim_end()));
            page.push_str(&socwarden_core::reference::flags(cmd));
        }
        socwarden_core::reference::check(
            env!("CARGO_MANIFEST_DIR"),
            "docs/reference/kubectl-warden.md",
            "commands",
            &page,
        );
    }
}
