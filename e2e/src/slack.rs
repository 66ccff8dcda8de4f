//! Slack's official Python SDK (`slack_sdk`, in the virtualenv `e2e/cluster mcp-client` makes) as
//! the judge of the Slack messages the operator sends: every block must parse into the SDK's
//! Block Kit model, pass its validation, and read back exactly as sent.

use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::io::Write as _;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
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

/// What Slack's SDK finds wrong with `message` (empty: nothing).
pub fn problems(message: &Value) -> Result<Vec<String>> {
    let mut child = Command::new(crate::mcp::python()?)
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting python with slack_sdk")?;
    child.stdin.take().context("stdin")?.write_all(&serde_json::to_vec(message)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("slack_sdk check failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
