//! Helpers shared by the end-to-end tests and the benchmarks, by concern:
//!
//! - [`browser`]: headless Chromium through chromedriver (`Browser`), `kubectl warden console` as
//!   a test identity (`Console`), and `raw` HTTP for what browsers never send.
//! - [`cluster`]: reaching the control plane — the repository root and the local cluster's state
//!   directory, kubeconfigs and clients (admin, test identities via `as_user`, agent tokens),
//!   `kubectl`, server-side apply (`apply`, `apply_yaml`) and access checks (`can_i`, `status_of`).
//! - [`operator`]: the operator under test as a child process (`Operator`, `warden_bin`), the chart
//!   ServiceAccount it runs as, `http_get` for its endpoints, and its memory (`rss_mib`,
//!   `peak_rss_mib`).
//! - [`helm`]: Helm v4 (built from its Go module) on the chart: `render_chart` (`helm template`),
//!   `helm_with` for any other command, the tested Kubernetes version.
//! - [`fixtures`]: builders of the test world — `Namespaces`, `install_crds`, `default_policy`,
//!   `action`, `agent`.
//! - [`requests`]: filing and deciding as the tests' people and agents — `request`, `file`,
//!   `approval`, `approve`, `refusal`, `decided`, `decision_of`, and `kubectl_warden` (the plugin).
//! - [`chat`]: the chat platforms' published models judging the notices (`chat::slack_problems`,
//!   `chat::teams_problems`).
//! - [`mcp`]: the official MCP Python SDK as the agents' client of the gateway (`McpAgent`).
//! - [`node`]: the local node's tests' view of it — its env, the containers it runs, the chart
//!   installed as `e2e/up --node` does, the operator's pods and the leader among them.
//! - [`prometheus`]: a real Prometheus with the shipped alert rules, scraping what a test says.
//! - [`latency`]: `percentile` and `report`, the latency summaries the benchmarks print.
//! - [`traffic`]: `Normal`, the steady behaviour of an agent acting with its own token.
//! - [`waiting`]: `wait_for`, `wait_agent`, `wait_report`, `wait_all_agents` and the predicates they take
//!   (`condition`, `ready`), plus small generic parsers (`metric`, `yaml_docs`).
//!
//! Everything is re-exported here, so `use soc_warden_e2e::*;` brings it all in.

pub mod browser;
pub mod chat;
pub mod cluster;
pub mod endpoint;
pub mod fixtures;
pub mod helm;
pub mod https;
pub mod latency;
pub mod mcp;
pub mod node;
pub mod operator;
pub mod prometheus;
pub mod requests;
pub mod traffic;
pub mod waiting;
pub mod walkthrough;

pub use browser::{Browser, Console};
pub use cluster::*;
pub use fixtures::*;
pub use helm::*;
pub use latency::*;
pub use mcp::{McpAgent, tool};
pub use operator::*;
pub use requests::*;
pub use traffic::*;
pub use waiting::*;
