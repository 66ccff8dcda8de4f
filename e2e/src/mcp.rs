//! A real MCP client against the operator's gateway: the reference agent `examples/mcp/agent.py`
//! on the official Python SDK (PyPI `mcp`, in the virtualenv `e2e/cluster mcp-client` makes).

use crate::cluster::repo;
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The Python of the virtualenv holding the official MCP SDK (made once, cached).
pub fn python() -> Result<PathBuf> {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(p) = PY.get() {
        return Ok(p.clone());
    }
    let out = std::process::Command::new(repo().join("e2e/cluster")).arg("mcp-client").output()?;
    if !out.status.success() {
        bail!("e2e/cluster mcp-client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let p = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    Ok(PY.get_or_init(|| p).clone())
}

/// What one run of the reference agent printed and how it exited (0 ok, 2 HTTP 401, 3 HTTP 403).
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub out: Value,
    pub err: String,
}

/// One agent at the gateway, with a token file and the operator's CA.
pub struct McpAgent {
    pub url: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

impl McpAgent {
    /// `token` as the agent's bearer token, trusting `ca` (PEM).
    pub fn new(url: &str, token: &str, ca: &str) -> Result<Self> {
        let dir = repo().join("target/e2e-logs").join(crate::unique("mcp"));
        std::fs::create_dir_all(&dir)?;
        let (token_file, ca_file) = (dir.join("token"), dir.join("ca.crt"));
        std::fs::write(&token_file, token)?;
        std::fs::write(&ca_file, ca)?;
        Ok(Self { url: url.to_string(), token_file, ca_file })
    }

    /// Runs `agent.py` with `args` after the connection options (e.g. `["list"]`,
    /// `["--mode", "legacy", "call", "tool", "{}"]`).
    pub async fn run(&self, args: &[&str]) -> Result<Run> {
        let mut cmd = tokio::process::Command::new(python()?);
        cmd.arg(repo().join("examples/mcp/agent.py"))
            .args(["--url", &self.url])
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(args)
            .kill_on_drop(true);
        let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
            .await
            .context("the MCP client did not finish in 120 s")??;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let out_json = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).with_context(|| format!("MCP client output is not JSON: {stdout}"))?
        };
        Ok(Run {
            code: out.status.code().unwrap_or(-1),
            out: out_json,
            err: String::from_utf8_lossy(&out.stderr).to_string(),
        })
    }

    /// `list`: the tools' names and the whole listing.
    pub async fn list(&self) -> Result<(Vec<String>, Value)> {
        let r = self.run(&["list"]).await?;
        if r.code != 0 {
            bail!("listing tools failed ({}): {}", r.code, r.err);
        }
        let names = r.out["tools"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        Ok((names, r.out))
    }

    /// `call TOOL ARGS` with extra options after the arguments (`--once`, `--request-state S`).
    pub async fn call(&self, tool: &str, args: &Value, extra: &[&str]) -> Result<Run> {
        let a = args.to_string();
        let mut all = vec!["call", tool, a.as_str()];
        all.extend_from_slice(extra);
        self.run(&all).await
    }
}

/// The tool named `name` in a listing.
pub fn tool<'a>(listing: &'a Value, name: &str) -> Option<&'a Value> {
    listing["tools"].as_array()?.iter().find(|t| t["name"] == name)
}
