//! The MCP gateway against a real API server, driven by a real MCP client not written by us (the
//! official Python SDK, `examples/mcp/agent.py`): each agent sees only its own tools, calls run
//! through the gate as requests stamped with the agent's identity, gated calls wait for two leads
//! and then return the executed result, and what an adversary tries is refused — bad arguments,
//! foreign tools, tokens of the wrong audience, revoked tokens, humans, other ServiceAccounts,
//! paused agents, a copied stamp. A probing agent seen only through MCP (no audit sink) is contained.

use anyhow::Result;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use soc_warden_e2e::*;
use socwarden_api::{ActionRequest, Decision, SocAgent, Tier};
use std::time::Duration;

const T: Duration = Duration::from_secs(40);

struct World {
    scene: Scene,
    read: String,
    isolate: String,
    wipe: String,
}

impl std::ops::Deref for World {
    type Target = Scene;
    fn deref(&self) -> &Scene {
        &self.scene
    }
}

/// A catalog with a low-risk read (no execution), a medium-risk reversible isolation (a
/// NetworkPolicy the operator applies) and a delete no agent of these tests lists.
async fn world() -> Result<World> {
    let scene = Scene::new().await?;
    let (read, isolate, wipe) = (unique("read"), unique("isolate"), unique("wipe"));
    let catalog = format!(
        r#"
apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {read}}}
spec:
  risk: low
  description: Read the pods of an alert
  parameters: [{{name: alertId, type: string, required: true, pattern: "[A-Z]+-[0-9]+"}}]
  grants: [{{apiGroups: [""], resources: [pods], verbs: [list]}}]
---
apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {isolate}}}
spec:
  risk: medium
  reversible: true
  description: Isolate an app with a deny-all NetworkPolicy
  parameters: [{{name: app, type: string, required: true, pattern: "[a-z0-9-]+"}}]
  grants: [{{apiGroups: [networking.k8s.io], resources: [networkpolicies], verbs: [create, delete]}}]
  execution:
    manifest: |
      apiVersion: networking.k8s.io/v1
      kind: NetworkPolicy
      metadata:
        name: "isolate-${{app}}"
      spec:
        podSelector: {{matchLabels: {{app: "${{app}}"}}}}
        policyTypes: [Ingress, Egress]
---
apiVersion: socwarden.io/v1alpha1
kind: SocAction
metadata: {{name: {wipe}}}
spec:
  risk: low
  grants: [{{apiGroups: [""], resources: [pods], verbs: [delete]}}]
"#
    );
    apply_yaml(&scene.admin, &catalog).await?;
    Ok(World { scene, read, isolate, wipe })
}

/// Agent `name` at `tier` with `actions`, approvers soc-leads (two needed); ready.
async fn new_agent(w: &World, name: &str, tier: Tier, actions: &[&str], learning: Option<&str>) -> Result<()> {
    let mut a = agent(name, w.home(), tier, actions, &[w.scope()]);
    a.spec.approvers.groups = vec!["soc-leads".into()];
    a.spec.approvers.min_approvals = 2;
    if let Some(l) = learning {
        a.spec.baseline.learning_period = l.into();
    }
    apply(&Api::<SocAgent>::namespaced(w.admin.clone(), w.home()), &a).await?;
    wait_agent(&w.admin, w.home(), name, "Ready", T, ready).await?;
    Ok(())
}

/// The agent `name` at the gateway with the token SOC Warden issued it.
async fn at_gateway(w: &World, op: &Operator, name: &str) -> Result<McpAgent> {
    let token = agent_token(&w.admin, w.home(), name).await?.expect("token issued");
    with_token_at(w, op, &token).await
}

async fn with_token_at(w: &World, op: &Operator, token: &str) -> Result<McpAgent> {
    McpAgent::new(&op.mcp_url(), token, &https::webhook_ca(&w.admin).await?)
}

fn target(w: &World, name: &str) -> Value {
    json!({"kind": "Pod", "name": name, "namespace": w.scope()})
}

fn text(r: &Run) -> String {
    r.out["text"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

use soc_warden_e2e::mcp::Run;

#[tokio::test]
async fn each_agent_sees_its_own_tools_and_an_autonomous_call_returns_the_executed_result() -> Result<()> {
    let w = world().await?;
    let op = Operator::start().await?;
    new_agent(&w, "auto", Tier::Autonomous, &[&w.read, &w.isolate], None).await?;
    new_agent(&w, "obs", Tier::Observe, &[&w.read], None).await?;
    let (auto, obs) = (at_gateway(&w, &op, "auto").await?, at_gateway(&w, &op, "obs").await?);

    // Each sees exactly its own actions (and the two built-ins), with hints from the catalog.
    let (names, listing) = auto.list().await?;
    assert_eq!(names, [w.read.as_str(), w.isolate.as_str(), "warden_status", "warden_request"]);
    assert_eq!(listing["protocolVersion"], "2026-07-28", "the current revision is negotiated");
    let read = tool(&listing, &w.read).unwrap();
    assert_eq!(read["annotations"]["readOnlyHint"], true, "{read}");
    assert!(read["description"].as_str().unwrap().contains("Runs at once"), "{read}");
    let isolate = tool(&listing, &w.isolate).unwrap();
    assert_eq!(isolate["annotations"]["readOnlyHint"], false, "{isolate}");
    assert_eq!(isolate["annotations"]["destructiveHint"], false, "reversible: {isolate}");
    assert_eq!(isolate["inputSchema"]["properties"]["target"]["properties"]["namespace"]["enum"], json!([w.scope()]));
    assert_eq!(isolate["inputSchema"]["properties"]["parameters"]["required"], json!(["app"]));
    let (names, listing) = obs.list().await?;
    assert_eq!(names, [w.read.as_str(), "warden_status", "warden_request"]);
    assert!(tool(&listing, &w.read).unwrap()["description"].as_str().unwrap().contains("recommendation"));
    // Clients of the 2025 revisions are served too.
    let old = auto.run(&["--mode", "legacy", "list"]).await?;
    assert_eq!((old.code, old.out["protocolVersion"].as_str()), (0, Some("2025-11-25")), "{}", old.err);

    // An autonomous call: executed, the result returned, the request stamped as the agent.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let args = json!({"parameters": {"app": "web"}, "target": target(&w, "web-1"), "justification": "alert SOC-7"});
    let r = auto.run(&["--traceparent", trace, "call", &w.isolate, &args.to_string()]).await?;
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out["isError"], false, "{}", r.out);
    let s = &r.out["structuredContent"];
    assert_eq!(s["decision"], "AutoApproved", "{s}");
    assert_eq!(s["execution"]["state"], "Succeeded", "{s}");
    assert!(text(&r).contains("was executed"), "{}", text(&r));
    let name = s["request"].as_str().unwrap().to_string();
    let req = Api::<ActionRequest>::namespaced(w.admin.clone(), w.home()).get(&name).await?;
    assert_eq!(req.spec.requester, format!("system:serviceaccount:{}:warden-auto", w.home()));
    assert_eq!(req.annotations().get("socwarden.io/filed-via").map(String::as_str), Some("mcp"));
    Api::<NetworkPolicy>::namespaced(w.admin.clone(), w.scope()).get("isolate-web").await?;
    // The trace the client sent is on the decision-log lines of the request.
    let lines = logged(&name, w.home());
    assert!(!lines.is_empty() && lines.iter().all(|l| l["traceparent"] == trace), "{lines:?}");

    // The observe tier: recorded as a recommendation, nothing run, said in words.
    let r = obs.call(&w.read, &json!({"parameters": {"alertId": "SOC-8"}, "target": target(&w, "web-1")}), &[]).await?;
    assert_eq!((r.code, &r.out["isError"]), (0, &json!(false)), "{}", r.err);
    assert_eq!(r.out["structuredContent"]["decision"], "Recommended");
    assert!(text(&r).contains("nothing is executed"), "{}", text(&r));

    // warden_status says what the agent may do alone, never its drift score.
    let st = auto.call("warden_status", &json!({}), &[]).await?;
    assert_eq!(st.out["structuredContent"]["effectiveTier"], "autonomous", "{}", st.out);
    assert!(!st.out.to_string().contains("score"), "{}", st.out);
    let m = op.metrics().await?;
    assert!(metric(&m, "socwarden_mcp_calls_total", &[("tool", &w.isolate), ("outcome", "ok")]).unwrap_or(0.0) >= 1.0);
    Ok(())
}

#[tokio::test]
async fn a_gated_call_waits_for_two_leads_and_the_retry_returns_the_executed_result() -> Result<()> {
    let w = world().await?;
    let op = Operator::start().await?;
    // The agent may have two requests waiting at most: the quota applies to calls as to requests.
    let policy = unique("two-pending");
    apply_yaml(&w.admin, &format!("apiVersion: socwarden.io/v1alpha1\nkind: AutonomyPolicy\nmetadata: {{name: {policy}}}\nspec: {{requests: {{maxPending: 2}}}}\n")).await?;
    new_agent(&w, "bot", Tier::Supervised, &[&w.read, &w.isolate], None).await?;
    Api::<SocAgent>::namespaced(w.admin.clone(), w.home())
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"policyRef": policy}})))
        .await?;
    let bot = at_gateway(&w, &op, "bot").await?;
    let (_, listing) = bot.list().await?;
    let d = tool(&listing, &w.isolate).unwrap()["description"].as_str().unwrap().to_string();
    assert!(d.contains("Needs 2 approvals from group soc-leads"), "{d}");

    // Current revision: an input-required answer carrying the signed request state; a retry while
    // it waits gets the same answer.
    let args = json!({"parameters": {"app": "db"}, "target": target(&w, "db-1")});
    let first = bot.call(&w.isolate, &args, &["--once"]).await?;
    assert_eq!((first.code, &first.out["inputRequired"]), (0, &json!(true)), "{} {}", first.out, first.err);
    let state = first.out["requestState"].as_str().unwrap().to_string();
    let requests = Api::<ActionRequest>::namespaced(w.admin.clone(), w.home());
    let mine = requests.list(&Default::default()).await?.items;
    let pending: Vec<_> = mine.iter().filter(|r| r.spec.action == w.isolate).collect();
    assert_eq!(pending.len(), 1, "one request filed");
    let name = pending[0].name_any();
    assert_eq!(decision_of(&w.admin, w.home(), &name).await?, Some(Decision::Pending));
    let again = bot.call(&w.isolate, &args, &["--once", "--request-state", &state]).await?;
    assert_eq!(again.out["inputRequired"], true, "still waiting: {}", again.out);
    assert_eq!(requests.list(&Default::default()).await?.items.len(), mine.len(), "a retry files nothing");

    // An older client: a "pending approval" answer naming the request, and warden_request to poll.
    let old_args = json!({"parameters": {"app": "api"}, "target": target(&w, "api-1")});
    let old = bot.run(&["--mode", "legacy", "call", &w.isolate, &old_args.to_string()]).await?;
    assert_eq!(old.out["isError"], false, "{} {}", old.out, old.err);
    assert!(text(&old).starts_with("pending approval: request mcp-"), "{}", text(&old));
    let old_name = old.out["structuredContent"]["request"].as_str().unwrap().to_string();
    let poll = bot.call("warden_request", &json!({"request": old_name}), &[]).await?;
    assert_eq!(poll.out["structuredContent"]["decision"], "Pending", "{}", poll.out);
    // A third waiting request is beyond the policy's quota: refused by the webhook, said why.
    let third =
        bot.call(&w.isolate, &json!({"parameters": {"app": "dns"}, "target": target(&w, "dns-1")}), &[]).await?;
    assert_eq!(third.out["isError"], true, "{}", third.out);
    assert!(text(&third).contains("waiting for a decision"), "{}", text(&third));

    // Two leads approve with the plugin, as their own identities.
    for lead in ["lead-a", "lead-b"] {
        let (ok, out) = plugin_approve(lead, &name, w.home(), "confirmed")?;
        assert!(ok, "{out}");
    }
    let done = bot.call(&w.isolate, &args, &["--request-state", &state]).await?;
    assert_eq!(done.out["isError"], false, "{} {}", done.out, done.err);
    let s = &done.out["structuredContent"];
    assert_eq!(
        (s["decision"].as_str(), s["execution"]["state"].as_str()),
        (Some("Approved"), Some("Succeeded")),
        "{s}"
    );
    Api::<NetworkPolicy>::namespaced(w.admin.clone(), w.scope()).get("isolate-db").await?;
    let mut approvers: Vec<String> = decided(&w.admin, w.home(), &name)
        .await?
        .status
        .unwrap()
        .approvals
        .iter()
        .map(|a| a.approver.clone())
        .collect();
    approvers.sort();
    assert_eq!(approvers, ["lead-a", "lead-b"], "each approval stamped with its lead");

    // A state is bound to its agent and tool: another tool (or a tampered state) gets nothing.
    let wrong = bot.call(&w.read, &json!({"target": target(&w, "x")}), &["--once", "--request-state", &state]).await?;
    assert_ne!(wrong.code, 0, "a state for another tool is refused: {}", wrong.out);
    assert!(wrong.err.contains("request state"), "{}", wrong.err);
    Ok(())
}

/// `token` with its lifetime moved to end `ends_in` seconds from now (negative: in the past),
/// signed again with the local control plane's ServiceAccount key.
fn resigned(token: &str, ends_in: i64) -> Result<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    anyhow::ensure!(parts.len() == 3, "not a JWT");
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    let now = jiff::Timestamp::now().as_second();
    claims["iat"] = json!(now - 1200);
    claims["nbf"] = json!(now - 1200);
    claims["exp"] = json!(now + ends_in);
    let input = format!("{}.{}", parts[0], b64.encode(serde_json::to_vec(&claims)?));
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(cluster_dir().join("pki/sa.key"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "openssl could not sign");
    Ok(format!("{input}.{}", b64.encode(out.stdout)))
}

/// A raw HTTPS request to the gateway's port, as any pod could send; the whole response text.
async fn raw(op: &Operator, ca: &str, request: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = https::connect(op.mcp_port, ca, None).await?;
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    Ok(String::from_utf8_lossy(&buf).to_string())
}

/// The token in a lead's kubeconfig (a static token of the local control plane).
fn human_token(identity: &str) -> Result<String> {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(cluster_dir().join(format!("{identity}.kubeconfig")))?)?;
    Ok(kc["users"][0]["user"]["token"].as_str().unwrap_or_default().to_string())
}

async fn token_for(admin: &Client, ns: &str, sa: &str, audiences: Option<Vec<&str>>) -> Result<String> {
    let tr: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": audiences, "expirationSeconds": 600}}))?;
    let t = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &tr)
        .await?;
    Ok(serde_json::to_value(&t)?["status"]["token"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn the_gateway_refuses_what_an_adversary_tries() -> Result<()> {
    let w = world().await?;
    let op = Operator::start().await?;
    new_agent(&w, "bot", Tier::Supervised, &[&w.read, &w.isolate], None).await?;
    let bot = at_gateway(&w, &op, "bot").await?;
    let home = w.home();

    // Arguments outside the schema and a tool outside its catalog: clear errors, nothing filed.
    let before = Api::<ActionRequest>::namespaced(w.admin.clone(), home).list(&Default::default()).await?.items.len();
    let bad =
        bot.call(&w.isolate, &json!({"parameters": {"app": "Web; rm -rf /"}, "target": target(&w, "w")}), &[]).await?;
    assert_eq!(bad.out["isError"], true, "{}", bad.out);
    assert!(text(&bad).contains("parameter app") && text(&bad).contains("does not match"), "{}", text(&bad));
    let sneaky = bot.call(&w.isolate, &json!({"target": target(&w, "w"), "requester": "lead-a"}), &[]).await?;
    assert!(text(&sneaky).contains("unknown argument \"requester\""), "{}", text(&sneaky));
    let outside = bot
        .call(
            &w.isolate,
            &json!({"parameters": {"app": "web"}, "target": {"kind": "Pod", "name": "x", "namespace": "kube-system"}}),
            &[],
        )
        .await?;
    assert_eq!(outside.out["isError"], true, "{}", outside.out);
    assert!(text(&outside).contains("scope"), "{}", text(&outside));
    let foreign = bot.call(&w.wipe, &json!({"target": target(&w, "w")}), &[]).await?;
    assert_eq!(foreign.out["isError"], true);
    assert!(text(&foreign).contains("there is no tool"), "{}", text(&foreign));
    let after = Api::<ActionRequest>::namespaced(w.admin.clone(), home).list(&Default::default()).await?.items.len();
    assert_eq!(before, after, "refused calls file nothing");
    let m = op.metrics().await?;
    assert!(
        metric(&m, "socwarden_mcp_calls_total", &[("tool", &w.isolate), ("outcome", "refused")]).unwrap_or(0.0) >= 3.0,
        "{m}"
    );

    // Tokens that are not the agent's own for the gateway: 401; identities that are not agents: 403.
    let api_only = token_for(&w.admin, home, "warden-bot", None).await?;
    let r = with_token_at(&w, &op, &api_only).await?.run(&["list"]).await?;
    assert_eq!(r.code, 2, "a token without the gateway's audience: 401; {}", r.err);
    assert!(r.err.contains("not valid for socwarden.io/mcp"), "{}", r.err);
    let r = with_token_at(&w, &op, &human_token("lead-a")?).await?.run(&["list"]).await?;
    assert_eq!(r.code, 2, "a human's token: 401; {}", r.err);
    let r = with_token_at(&w, &op, "not-a-token").await?.run(&["list"]).await?;
    assert_eq!(r.code, 2, "garbage: 401; {}", r.err);
    let intruder: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "intruder"}}))?;
    Api::<ServiceAccount>::namespaced(w.admin.clone(), home).create(&PostParams::default(), &intruder).await?;
    let other = token_for(&w.admin, home, "intruder", Some(vec!["socwarden.io/mcp"])).await?;
    let r = with_token_at(&w, &op, &other).await?.run(&["list"]).await?;
    assert_eq!(r.code, 3, "another ServiceAccount with the right audience: 403; {}", r.err);
    assert!(r.err.contains("not a SOC Warden agent"), "{}", r.err);

    // A copied stamp borrows nothing: an analyst filing the gateway's stamped spec is the requester.
    let auto_args = json!({"parameters": {"alertId": "SOC-9"}, "target": target(&w, "web-1")});
    let ok = bot.call(&w.read, &auto_args, &[]).await?;
    let filed = ok.out["structuredContent"]["request"].as_str().unwrap().to_string();
    let original = Api::<ActionRequest>::namespaced(w.admin.clone(), home).get(&filed).await?;
    let mut copy = ActionRequest::new("copied", original.spec.clone());
    copy.metadata.namespace = Some(home.to_string());
    let analyst = as_user("analyst").await?;
    let made = Api::<ActionRequest>::namespaced(analyst, home).create(&PostParams::default(), &copy).await?;
    assert_eq!(made.spec.requester, "analyst", "the stamp is the analyst's, not the agent's");
    let d = wait_for("the copy decided", T, || async { decision_of(&w.admin, home, "copied").await }).await?;
    assert_eq!(
        d,
        Decision::Pending,
        "filed by a person: it waits for the quorum, the agent's autonomy is not borrowed"
    );

    // A pause: the agent's next call is refused (403 while the API server still accepts the token
    // from its cache, then 401 once the bound Secret is gone).
    Api::<SocAgent>::namespaced(w.admin.clone(), home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}})))
        .await?;
    let r = bot.run(&["list"]).await?;
    assert!(r.code == 3 || r.code == 2, "paused: refused; {} {}", r.code, r.err);
    assert!(r.err.contains("paused") || r.err.contains("not valid"), "{}", r.err);
    let r = bot.call(&w.read, &auto_args, &[]).await?;
    assert!(r.code == 3 || r.code == 2, "paused: calls refused; {} {}", r.code, r.err);

    // A token whose Secret was deleted is revoked for the gateway too.
    Api::<SocAgent>::namespaced(w.admin.clone(), home)
        .patch("bot", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}})))
        .await?;
    wait_agent(&w.admin, home, "bot", "Ready again", T, ready).await?;
    let fresh = agent_token(&w.admin, home, "bot").await?.expect("re-issued");
    let again = with_token_at(&w, &op, &fresh).await?;
    assert_eq!(again.run(&["list"]).await?.code, 0);
    // The same token, expired (its lifetime moved into the past, signed with the cluster's key;
    // its Secret still exists): 401.
    if !external_cluster() {
        let control = with_token_at(&w, &op, &resigned(&fresh, 600)?).await?.run(&["list"]).await?;
        assert_eq!(control.code, 0, "re-signed and still valid: accepted (the forgery is sound); {}", control.err);
        let r = with_token_at(&w, &op, &resigned(&fresh, -600)?).await?.run(&["list"]).await?;
        assert_eq!(r.code, 2, "an expired token: 401; {}", r.err);
    }
    // Without a token: 401 pointing at the RFC 9728 metadata, which says how to authenticate.
    let ca = https::webhook_ca(&w.admin).await?;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&op, &ca, &head).await?;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let challenge = "resource_metadata=\"https://127.0.0.1/.well-known/oauth-protected-resource/mcp\"";
    assert!(answer.to_lowercase().contains("www-authenticate: bearer") && answer.contains(challenge), "{answer}");
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let meta = raw(&op, &ca, &get("/.well-known/oauth-protected-resource/mcp")).await?;
    let doc: Value = serde_json::from_str(meta.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default())?;
    assert_eq!(doc["resource"], "https://127.0.0.1/mcp", "{meta}");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    // A client of the 2025-06-18 revision is answered in its revision.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
    .to_string();
    let post = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {fresh}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{init}",
        init.len()
    );
    let answer = raw(&op, &ca, &post).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""protocolVersion":"2025-06-18""#), "{answer}");
    let elsewhere = raw(&op, &ca, &get("/metrics")).await?;
    assert!(elsewhere.starts_with("HTTP/1.1 404"), "only its own pages: {elsewhere}");
    let secrets = Api::<Secret>::namespaced(w.admin.clone(), home);
    secrets.delete(&socwarden_core::agent::credentials::secret_name("bot"), &DeleteParams::default()).await?;
    wait_for("revoked token refused", Duration::from_secs(20), || async {
        Ok((again.run(&["list"]).await?.code == 2).then_some(()))
    })
    .await?;
    let m = op.metrics().await?;
    assert!(
        metric(&m, "socwarden_mcp_calls_total", &[("tool", "(none)"), ("outcome", "unauthenticated")]).unwrap_or(0.0)
            >= 3.0
    );
    Ok(())
}

/// Drift without the audit sink: the agent's calls through the gateway are its behaviour.
#[tokio::test]
async fn a_probing_agent_seen_only_through_mcp_is_contained() -> Result<()> {
    let w = world().await?;
    let op = Operator::start_opts(&[], false).await?;
    new_agent(&w, "prober", Tier::Supervised, &[&w.read], Some("20s")).await?;
    let bot = at_gateway(&w, &op, "prober").await?;
    let normal = json!({"parameters": {"alertId": "SOC-1"}, "target": target(&w, "web-1")});
    // Learning: normal calls, until the baseline is learned.
    let learned = wait_for("baseline learned through MCP calls", Duration::from_secs(90), || async {
        let r = bot.call(&w.read, &normal, &[]).await?;
        anyhow::ensure!(r.out["isError"] == false, "a normal call failed: {} {}", r.out, r.err);
        let report: Option<socwarden_api::DriftReport> =
            Api::namespaced(w.admin.clone(), w.home()).get_opt("prober").await?;
        Ok(report.and_then(|r| r.status).and_then(|s| s.baseline).filter(|b| b.learned_at.is_some()))
    })
    .await?;
    assert!(learned.learned_at.is_some());
    // Probing: targets outside its scope, again and again.
    let probe = json!({"parameters": {"alertId": "SOC-2"}, "target": {"kind": "Pod", "name": "etcd", "namespace": "kube-system"}});
    for _ in 0..8 {
        let r = bot.call(&w.read, &probe, &[]).await?;
        if r.code != 0 {
            break; // contained already: the gateway refuses it
        }
        assert_eq!(r.out["isError"], true, "{}", r.out);
    }
    let a = wait_agent(&w.admin, w.home(), "prober", "paused for drift", T, |a| {
        condition(a, "Paused").is_some_and(|c| c.status == "True" && c.reason == "Drift")
    })
    .await?;
    let msg = condition(&a, "Paused").unwrap().message;
    assert!(msg.contains("outOfScope"), "{msg}");
    let r = bot.call(&w.read, &normal, &[]).await?;
    assert!(r.code == 2 || r.code == 3, "contained: refused at the gateway; {} {}", r.code, r.err);
    Ok(())
}
