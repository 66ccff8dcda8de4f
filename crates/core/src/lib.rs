//! Every decision of SOC Warden, as pure functions over plain data: `(spec, observed state, now)
//! -> decision`. No Kubernetes client, no async runtime, no clock reads (the clock is an input;
//! `clippy.toml` forbids `Timestamp::now` and `Instant::now` here). The webhook and the reconcilers
//! in `soc-warden` call these same functions.
//!
//! Where each thing is decided:
//! - `admission::gate`: what happens to an ActionRequest (checks in order, quorum, expiry).
//! - `admission::approvals`: whether one Approval counts — ONE check for requests, promotions and
//!   resumes — and whether it approves the content its approver was shown (`seen_problem`).
//! - `admission::identity`: the agent ServiceAccount name, built and parsed in one place; which
//!   token a call was made with (`CredentialId`, the `jti` as audit events name it).
//! - `admission::effect`: every object a request touches (written, selected, named by parameters).
//! - `admission::kinds`: what a kind is (resolved through discovery) and a name's one spelling
//!   (addresses parsed): nothing is compared as written.
//! - `admission::selector`: label selectors as structures, evaluated here.
//! - `admission::quota`: how many requests an agent may file, and how long records are kept.
//! - `admission::params`: parameter schemas, scope and protected targets, execution templates.
//! - `admission::signature`: what the admission webhook signs and how it is verified; the content
//!   hash a request is shown with (`request_content`).
//! - `agent::policy`: which tier lets which risk run without approval.
//! - `agent::rbac`: what RBAC an agent gets and whether the operator may delegate it.
//! - `agent::validate`: what is wrong with an agent's spec, and how to fix it; which namespaces the
//!   audit sink cannot see (no agent there).
//! - `agent::pause`: whether an agent is paused, and why; which drift pause the DriftReport keeps
//!   (it outlives the SocAgent); the grace period of a paused agent's pods.
//! - `agent::authority`: which virtual verb (`pause`, `update`) a change of a SocAgent needs, and
//!   that no owner reference ties a SocAgent's or DriftReport's lifetime to another object.
//! - `agent::credentials`: names of the credential objects, and when a token is (re)issued.
//! - `agent::promotion`: which tier is enforced while a promotion waits for evidence and approvals.
//! - `agent::plan`: the whole desired state of one agent, and its status.
//! - `agent::transitions`: which Events and decision-log lines a change of status produces.
//! - `behaviour::drift`: the baseline, the drift signals and score, and the judgement.
//! - `behaviour::audit`: reading the API server's audit events into observations (with the token
//!   of each call).
//! - `behaviour::records`: which decided request covers a write of an agent (approved vs done).
//! - `behaviour::report`: what the DriftReport (drift and baseline, kept from the agent) shows.
//! - `catalog`: whether a SocAction may be delegated and an AutonomyPolicy used.
//! - `execution`: what an execution writes or sends, exactly (the executor runs it, the console
//!   shows it to the approver).
//! - `envelope`: which objects a SocAction's manifest may write with the operator's identity.
//! - `decisionlog`: what one line of the decision log says, and its NIST phase.
//! - `notify`: which decisions are notices, which Notifier takes which, what each sink is sent (an
//!   agent's words only in elements that render no Markdown, links defanged).
//! - `outbox`: which notice a sink is sent next (urgent first, a flood bounded), and retries.
//! - `mcp`: the MCP gateway — who may use it, an agent's tools, a call as a request, the answer.
//!
//! Not here: the CRDs' validation rules (CEL), which the API server holds on its own while the
//! operator is down, are written beside the types in `socwarden_api` (ceilings, durations,
//! Notifier URLs and Secrets, immutable records); `agent::policy`, `notify` and the webhook stay
//! the authority, in the same words.

pub mod admission;
pub mod agent;
pub mod behaviour;
pub mod catalog;
pub mod decisionlog;
pub mod envelope;
pub mod execution;
pub mod mcp;
pub mod notify;
pub mod outbox;
pub mod reference;
pub mod request;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
