// SOC Warden console. Everything shown comes from the API server as the user; any text may have
// been written by a prompt-injected agent, so nothing is ever inserted as HTML: only text nodes.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children.flat(Infinity)) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Replaces what `box` shows (arrays flattened, absent parts skipped).
function show(box, ...children) {
  box.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

async function get(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const body = await r.json().catch(() => ({ error: "the console answered " + r.status }));
  if (!r.ok) throw new Error(body.error || "the console answered " + r.status);
  return body;
}

function duration(secs) {
  if (secs === null || secs === undefined) return "-";
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  return Math.floor(s / 86400) + "d" + Math.floor((s % 86400) / 3600) + "h";
}

const riskBadge = (risk) => el("span", { class: "badge risk-" + (risk || "unknown") }, risk || "risk unknown");
const phaseBadge = (phase) => el("span", { class: "badge phase-" + (phase || "none") }, phase || "not reconciled");
const agentLink = (ns, name) => el("a", { href: `/agents/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` }, name);
const requestLink = (ns, name) => el("a", { href: `/requests/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` }, name);

function approvalsLine(r) {
  const who = (r.approvals || []).map((a) => `${a.decision} by ${a.approver}`);
  return `${(r.approvals || []).filter((a) => a.decision === "approve").length} of ${r.required} approvals` +
    (who.length ? ` (${who.join(", ")})` : "") + (r.approvers ? ` — approvers: ${r.approvers}` : "");
}

function whatRuns(runs, decided) {
  if (!runs) return null;
  const title = decided ? { manifest: "What the execution applies (as rendered from the request)",
    http: `What the execution POSTs to ${runs.url || "the endpoint"} (signed)` }[runs.kind] || "What runs"
    : { manifest: "Exactly what will be applied (server-side apply, rendered now)",
    http: `Exactly what will be POSTed to ${runs.url || "the endpoint"} (signed)` }[runs.kind] || "What will run";
  return [el("h3", {}, title), runs.kind === "manifest" || runs.kind === "http" ? el("pre", { "data-testid": "runs" }, runs.text) : el("p", { class: "note" }, runs.text)];
}

// Sends one write (a JSON body, from this page: the console checks its Origin) and says in
// `outcome` what came of it; `said` words a success from the answer.
async function write(path, payload, button, outcome, said) {
  button.disabled = true;
  try {
    const res = await fetch(path, {
      method: "POST", credentials: "same-origin", headers: { "content-type": "application/json" },
      body: JSON.stringify(payload),
    });
    const body = await res.json().catch(() => ({}));
    outcome.textContent = res.ok ? said(body) : "Refused: " + (body.error || res.status);
  } catch (e) { outcome.textContent = "Failed: " + e.message; }
  button.disabled = false;
}

// The content hash of each request as the user first saw it on this page (or as the chat notice
// that linked here showed it: `?seen=`), until they say they reviewed what it shows now. An
// approval names it, so an action edited after the user looked is never approved unseen: the
// admission webhook refuses an approval whose hash is not the request's content any more.
const reviewed = {};

function reviewedOf(r) {
  const key = `${r.namespace}/${r.name}`;
  if (!(key in reviewed)) {
    const linked = new URLSearchParams(location.search).get("seen");
    reviewed[key] = location.pathname.startsWith("/requests/") && linked ? linked : r.seen;
  }
  return reviewed[key];
}

// Said when what the request runs is no longer what the user looked at.
function changedNotice(r) {
  const key = `${r.namespace}/${r.name}`;
  if (reviewedOf(r) === r.seen) return null;
  const ack = el("button", { type: "button", "data-testid": "reviewed" }, "I reviewed what it runs now");
  ack.addEventListener("click", () => { reviewed[key] = r.seen; render(); });
  return el("div", { class: "card changed", role: "alert", "data-testid": "changed" },
    `The action changed since you looked: SocAction ${r.action} was edited, and what this request runs is now what is shown below. ` +
    "An approval names what you reviewed, so it is refused until you review the new content.", " ", ack);
}

function decidePanel(r) {
  const id = `comment-${r.namespace}-${r.name}`;
  const can = r.canDecide || { ok: false, why: "unknown" };
  if (!can.ok) {
    return el("p", { class: "note", "data-testid": "cannot-decide" }, "You cannot decide this request: " + can.why);
  }
  const outcome = el("div", { class: "outcome", role: "status", "aria-live": "polite" });
  const send = (decision, button) => write("/api/decide",
    { namespace: r.namespace, request: r.name, decision, comment: document.getElementById(id).value, seen: reviewedOf(r) },
    button, outcome, (b) => `Recorded: ${b.decision} by ${b.approver} (${b.approval})`);
  const approve = el("button", { class: "approve", type: "button", "data-testid": "approve" }, "Approve");
  const deny = el("button", { class: "deny", type: "button", "data-testid": "deny" }, "Deny");
  approve.addEventListener("click", () => send("approve", approve));
  deny.addEventListener("click", () => send("deny", deny));
  return el("div", {},
    el("div", { class: "decide" },
      el("label", { for: id }, "Comment (kept with your decision)", el("textarea", { id, rows: 1 })),
      approve, deny),
    outcome);
}

function requestCard(r) {
  return el("section", { class: "card", "data-testid": "request", "data-name": r.name, "aria-label": `request ${r.name}` },
    el("h2", {}, requestLink(r.namespace, r.name), " — ", agentLink(r.namespace, r.agent), ` wants ${r.action} on ${r.target} `, riskBadge(r.risk)),
    el("div", { class: "row" },
      el("span", {}, "Filed by ", r.requester, " ", duration(r.ageSeconds), " ago"),
      el("span", { "data-deadline": r.expiresAt || "" }, "Time left: ", el("strong", { class: "left" }, duration(r.secondsLeft))),
      el("span", { "data-testid": "approvals" }, approvalsLine(r))),
    el("h3", {}, "The agent's justification (its own words: untrusted)"),
    el("div", { class: "untrusted" }, r.justification || "(none)"),
    el("h3", {}, "Effect set: every object this would touch"),
    (r.effect || []).length ? el("ul", { "data-testid": "effect" }, r.effect.map((e) => el("li", {}, e))) : el("p", { class: "note" }, "nothing beyond the target"),
    changedNotice(r),
    whatRuns(r.runs),
    r.seen ? el("p", { class: "muted", "data-testid": "content" }, "Content ", r.seen) : null,
    r.message ? el("p", { class: "note" }, r.message) : null,
    decidePanel(r));
}

async function queuePage(main) {
  const q = await get("/api/queue");
  show(main, el("h1", {}, "Approval queue"),
    q.items.length ? el("p", { class: "muted" }, `${q.items.length} request(s) waiting, oldest first.`)
      : el("p", { class: "muted", "data-testid": "empty" }, "No requests are waiting for approval."),
    q.items.map(requestCard));
}

async function fleetPage(main) {
  const f = await get("/api/fleet");
  const rows = f.agents.map((a) => el("tr", { class: a.paused ? "paused-row" : "" , "data-testid": "agent-row"},
    el("td", {}, agentLink(a.namespace, a.name), el("div", { class: "muted" }, a.namespace)),
    el("td", {}, a.tier, a.promotionPending ? el("div", { class: "muted" }, "promotion pending") : null),
    el("td", {}, a.effective || "-"),
    el("td", {}, phaseBadge(a.phase), a.paused ? el("div", {}, el("span", { class: "badge paused" }, "PAUSED: " + a.pause.reason)) : null),
    el("td", {}, a.drift ? `${a.drift.score.toFixed(2)} / ${a.drift.threshold.toFixed(2)}` : "-"),
    el("td", {}, (a.autonomous || []).join(", ") || "-"),
    el("td", {}, (a.gated || []).join(", ") || "-")));
  show(main, el("h1", {}, "Fleet"),
    el("table", {}, el("caption", { class: "muted" }, "Paused agents first."),
      el("thead", {}, el("tr", {}, ["Agent", "Declared tier", "Enforced tier", "Phase", "Drift (score / acts at)", "Runs alone", "Needs approval"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)));
}

const RULES = { oneStep: "One tier at a time", dwell: "Dwell time at the current tier", cleanWindow: "No drift pause in the clean window",
  coolingOff: "Cooling-off after a drift pause", approvals: "Approvals from the agent's approvers", shadowEvidence: "Shadow agreement with human decisions" };

function driftChart(drift) {
  const signals = drift.signals || [];
  if (!signals.length) return el("p", { class: "muted" }, "No drift signals: its behaviour matches the baseline (or it is still learning).");
  const w = 560, rowH = 26, left = 130, h = signals.length * rowH + 30;
  const x = (v) => left + Math.min(1, Math.max(0, v)) * (w - left - 10);
  const chart = svg("svg", { width: w, height: h, role: "img", "aria-label": `drift score ${drift.score.toFixed(2)}, acts at ${drift.threshold.toFixed(2)}` },
    signals.map((s, i) => [
      svg("text", { x: 0, y: i * rowH + 17 }, s.signal),
      svg("rect", { class: "bar" + (s.score >= drift.threshold ? " over" : ""), x: left, y: i * rowH + 5, width: Math.max(1, x(s.score) - left), height: 16 }),
      svg("title", {}, `${s.signal}: observed ${s.observed}, expected ${s.expected}`)]),
    svg("line", { class: "threshold", x1: x(drift.threshold), x2: x(drift.threshold), y1: 0, y2: h - 20 }),
    svg("text", { x: x(drift.threshold) + 4, y: h - 6 }, `acts at ${drift.threshold.toFixed(2)}`));
  return [chart, el("table", {}, el("thead", {}, el("tr", {}, ["Signal", "Observed", "Baseline", "Score"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, signals.map((s) => el("tr", {}, el("td", {}, s.signal), el("td", {}, s.observed), el("td", {}, s.expected), el("td", {}, s.score.toFixed(2))))))];
}

// The agent's own buttons: pause now, resume, approve its waiting promotion — each offered only
// when the API server (and, for approvals, the webhook's dry run) says the user may.
function agentActions(a) {
  const may = a.may || {};
  const outcome = el("div", { class: "outcome", role: "status", "aria-live": "polite" });
  const id = `act-comment-${a.namespace}-${a.name}`;
  const send = (act, button) => write("/api/act",
    { namespace: a.namespace, agent: a.name, act, comment: document.getElementById(id).value },
    button, outcome, (b) => "Done: " + b.done);
  const button = (act, label, cls) => {
    const b = el("button", { type: "button", class: cls, "data-testid": "act-" + act }, label);
    b.addEventListener("click", () => send(act, b));
    return b;
  };
  const offered = [];
  const notes = [];
  if (may.pause && may.pause.ok) offered.push(button("pause", "Pause now", "deny"));
  if (may.resume && may.resume.ok) offered.push(button("resume", "Resume", "approve"));
  else if (a.paused && may.resume) notes.push("Resume: " + may.resume.why);
  if (may.promote && may.promote.ok) offered.push(button("promote", `Approve the promotion to ${may.promote.to}`, "approve"));
  else if (a.promotionPending && may.promote) notes.push("Promotion: " + may.promote.why);
  if (!a.paused && may.pause && !may.pause.ok) notes.push("Pause: " + may.pause.why);
  return el("section", { class: "card", "data-testid": "actions" }, el("h2", {}, "What you can do"),
    offered.length ? el("div", { class: "decide" },
      el("label", { for: id }, "Comment (kept with an approval)", el("textarea", { id, rows: 1 })), offered) : null,
    notes.map((n) => el("p", { class: "note", "data-testid": "cannot-act" }, n)),
    outcome);
}

async function agentPage(main, ns, name) {
  const a = await get(`/api/agents/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  const p = a.promotion;
  show(main, 
    el("h1", {}, `Agent ${a.name} `, phaseBadge(a.phase)),
    a.paused ? el("div", { class: "card", role: "alert" }, el("span", { class: "badge paused" }, "PAUSED"), ` ${a.pause.reason} since ${a.pause.since}`) : null,
    el("section", { class: "card" }, el("div", { class: "row" },
      el("span", {}, "Namespace: ", a.namespace), el("span", {}, "Declared tier: ", el("strong", {}, a.tier)),
      el("span", {}, "Enforced tier: ", el("strong", {}, a.effective || "-")), el("span", {}, "Since: ", a.tierSince || "-"),
      el("span", {}, `Approvers: ${a.approvers} (${a.minApprovals} needed)`), el("span", {}, "Scope: ", (a.scope || []).join(", ")),
      el("span", {}, "Runs alone: ", (a.autonomous || []).join(", ") || "nothing"), el("span", {}, "Needs approval: ", (a.gated || []).join(", ") || "nothing"))),
    agentActions(a),
    el("section", { class: "card", "data-testid": "promotion" }, el("h2", {}, "Promotion"),
      p ? [el("p", {}, `${p.from} → ${p.to} waits for every rule:`),
        el("ul", { class: "checklist" }, p.checks.map((c) => el("li", { class: c.met ? "met" : "unmet" }, RULES[c.rule] || c.rule, c.met ? "" : ": " + c.missing))),
        p.shadow ? el("p", { class: "note" }, `Shadow evidence: ${p.shadow.agreed} of ${p.shadow.decisions} human decisions agreed.`) : null]
        : el("p", { class: "muted" }, a.promotionPending ? "A promotion is pending; the operator has not published its checklist yet." : "No promotion is pending: the declared tier is enforced.")),
    el("section", { class: "card", "data-testid": "drift" }, el("h2", {}, "Behaviour against the baseline"),
      a.drift ? [el("p", {}, `Drift score ${a.drift.score.toFixed(2)} (acts at ${a.drift.threshold.toFixed(2)}), ${a.drift.state}.`), driftChart(a.drift)]
        : el("p", { class: "muted" }, "No drift assessment yet (still learning, or you may not read DriftReports).")),
    el("section", { class: "card" }, el("h2", {}, "Recent requests"),
      (a.requests || []).length ? el("table", {}, el("thead", {}, el("tr", {}, ["Request", "Action", "Target", "Decision", "Execution", "Age"].map((t) => el("th", { scope: "col" }, t)))),
        el("tbody", {}, a.requests.map((r) => el("tr", {}, el("td", {}, requestLink(a.namespace, r.name)), el("td", {}, r.action), el("td", {}, r.target),
          el("td", {}, r.decision || "-"), el("td", {}, r.execution || "-"), el("td", {}, duration(r.ageSeconds))))))
        : el("p", { class: "muted" }, "None.")));
}

async function requestPage(main, ns, name) {
  const r = await get(`/api/requests/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
  show(main, 
    el("h1", {}, `Request ${r.name} `, el("span", { class: "badge", "data-testid": "decision" }, r.decision || "undecided"),
      r.execution && r.execution.state ? el("span", { class: "badge", "data-testid": "execution" }, r.execution.state) : null),
    el("section", { class: "card" }, el("h2", {}, "Its story"),
      el("ol", { class: "story", "data-testid": "story" }, (r.story || []).map((s) => el("li", {}, el("time", {}, s.at), s.what)))),
    r.decision === "Pending" ? requestCard(r) : el("section", { class: "card" },
      el("p", {}, agentLink(r.namespace, r.agent), ` asked for ${r.action} on ${r.target} `, riskBadge(r.risk)),
      el("p", {}, approvalsLine(r)),
      el("h3", {}, "The agent's justification (its own words: untrusted)"), el("div", { class: "untrusted" }, r.justification || "(none)"),
      el("h3", {}, "Effect set"), el("ul", {}, (r.effect || []).map((e) => el("li", {}, e))),
      whatRuns(r.runs, true)));
}

function banner(killSwitch) {
  const box = document.getElementById("killswitch");
  box.hidden = killSwitch.length === 0;
  box.textContent = killSwitch.length ? `KILL SWITCH ON (AutonomyPolicy ${killSwitch.join(", ")}): every agent is paused.` : "";
}

async function me() {
  const box = document.getElementById("me");
  try {
    const m = await get("/api/me");
    const may = Object.entries({ "decide requests": m.may.decide, "pause agents": m.may.pause, "read requests": m.may.readRequests, "read drift": m.may.readDrift })
      .filter(([, ok]) => ok).map(([what]) => what);
    show(box, el("div", { "data-testid": "identity" }, "Acting as ", el("strong", {}, m.user),
      m.groups.length ? ` (${m.groups.join(", ")})` : ""),
      el("div", { class: "caps", title: "who you are, as the API server authenticates you (SelfSubjectReview)" }, "You may: " + (may.join(", ") || "nothing here")));
    banner(m.killSwitch || []);
  } catch (e) { box.textContent = e.message; }
}

async function render() {
  const main = document.getElementById("main");
  // Keep what the user is typing across live refreshes.
  const typed = {};
  document.querySelectorAll("textarea").forEach((t) => { typed[t.id] = t.value; });
  const focused = document.activeElement && document.activeElement.id;
  const parts = location.pathname.split("/").slice(1).map(decodeURIComponent);
  document.querySelectorAll("[data-nav]").forEach((a) => a.removeAttribute("aria-current"));
  try {
    if (parts[0] === "fleet") { document.querySelector('[data-nav="fleet"]').setAttribute("aria-current", "page"); await fleetPage(main); }
    else if (parts[0] === "agents") await agentPage(main, parts[1], parts[2]);
    else if (parts[0] === "requests") await requestPage(main, parts[1], parts[2]);
    else { document.querySelector('[data-nav="queue"]').setAttribute("aria-current", "page"); await queuePage(main); }
  } catch (e) {
    show(main, el("h1", {}, "Cannot show this page"), el("p", { role: "alert" }, e.message));
  }
  for (const [id, v] of Object.entries(typed)) { const t = document.getElementById(id); if (t) t.value = v; }
  if (focused) { const f = document.getElementById(focused); if (f) f.focus(); }
}

function tick() {
  document.querySelectorAll("[data-deadline]").forEach((s) => {
    const d = Date.parse(s.getAttribute("data-deadline"));
    const left = s.querySelector(".left");
    if (left && !Number.isNaN(d)) left.textContent = duration((d - Date.now()) / 1000);
  });
}

let pending = null;
function refresh() {
  if (pending) return;
  pending = setTimeout(async () => { pending = null; await Promise.all([render(), me()]); }, 150);
}

document.addEventListener("DOMContentLoaded", () => {
  me(); render();
  setInterval(tick, 1000);
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.onopen = () => { live.textContent = "live: updates as the cluster changes"; };
  events.onmessage = refresh;
  events.onerror = () => { live.textContent = "reconnecting…"; };
});
