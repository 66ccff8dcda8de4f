//! Who may talk to the console, decided before anything else runs. The console holds the user's
//! credentials, so a page of another site (CSRF), a DNS name rebound to 127.0.0.1, or a local
//! process without the session token must get nothing from it: every request needs the right
//! `Host`, the session token (as a cookie, or once in the URL printed at start), and every write
//! an `Origin` of the console itself and a JSON body.

/// What the guard knows of a request (plain data, so every rule is a table test).
#[derive(Clone, Debug, Default)]
pub struct Facts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub content_type: Option<&'a str>,
}

/// What the server does with a request that passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Serve it.
    Serve,
    /// The token came in the URL: set the session cookie and redirect to the same path without it.
    SetCookie,
}

/// Why a request is refused: its HTTP status and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
}

pub const COOKIE: &str = "warden-console";

/// The pages and endpoints the console serves; anything else is not found, whoever asks.
pub fn known(method: &str, path: &str) -> Option<bool> {
    let page = path == "/"
        || path == "/fleet"
        || path == "/assets/app.js"
        || path == "/assets/app.css"
        || path == "/api/me"
        || path == "/api/queue"
        || path == "/api/fleet"
        || path == "/api/events"
        || segments(path, "/agents/", 2)
        || segments(path, "/requests/", 2)
        || segments(path, "/api/agents/", 2)
        || segments(path, "/api/requests/", 2);
    let write = path == "/api/decide" || path == "/api/act";
    match (page, write) {
        (true, _) => Some(method == "GET" || method == "HEAD"),
        (_, true) => Some(method == "POST"),
        _ => None,
    }
}

fn segments(path: &str, prefix: &str, n: usize) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| {
        let parts: Vec<&str> = rest.split('/').collect();
        parts.len() == n && parts.iter().all(|p| !p.is_empty() && p.len() <= 253)
    })
}

/// Compares without an early exit, so the time taken says nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(cookie: &str) -> Option<&str> {
    cookie.split(';').map(str::trim).find_map(|c| c.strip_prefix(COOKIE)?.strip_prefix('='))
}

fn query_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// The decision, in order: Host (DNS rebinding), known path and method, session token, and for
/// writes Origin (CSRF) and a JSON body (no HTML form can send one without a CORS preflight,
/// which this server never grants).
pub fn check(f: &Facts, token: &str, port: u16) -> Result<Pass, Refusal> {
    let ours = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !f.host.is_some_and(|h| ours.iter().any(|o| o == h)) {
        return Err(Refusal {
            status: 403,
            message: "wrong Host: the console answers only at http://127.0.0.1:<port> (or localhost), the address it printed",
        });
    }
    let Some(allowed) = known(f.method, f.path) else {
        return Err(Refusal { status: 404, message: "not a page of the console" });
    };
    if !allowed {
        return Err(Refusal { status: 405, message: "method not allowed here" });
    }
    let by_cookie = f.cookie.and_then(cookie_token).is_some_and(|t| same(t, token));
    let by_url = f.query.and_then(query_token).is_some_and(|t| same(t, token));
    let url_opens_a_page = by_url && f.method == "GET" && !f.path.starts_with("/api/");
    if !(by_cookie || url_opens_a_page) {
        return Err(Refusal {
            status: 401,
            message: "no valid session: open the URL kubectl warden console printed (it carries the session token)",
        });
    }
    if f.method == "POST" {
        let origins = ours.map(|o| format!("http://{o}"));
        if !f.origin.is_some_and(|o| origins.iter().any(|x| x == o)) {
            return Err(Refusal {
                status: 403,
                message: "cross-origin write refused: the console takes decisions only from its own pages",
            });
        }
        let json = f.content_type.and_then(|c| c.split(';').next()).is_some_and(|m| m.trim() == "application/json");
        if !json {
            return Err(Refusal { status: 415, message: "a decision is sent as application/json" });
        }
    }
    Ok(if by_cookie { Pass::Serve } else { Pass::SetCookie })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "0123456789abcdef";

    fn get(path: &'static str) -> Facts<'static> {
        Facts {
            method: "GET",
            path,
            host: Some("127.0.0.1:8000"),
            cookie: Some("warden-console=0123456789abcdef"),
            ..Default::default()
        }
    }

    fn post() -> Facts<'static> {
        Facts {
            method: "POST",
            path: "/api/decide",
            origin: Some("http://127.0.0.1:8000"),
            content_type: Some("application/json"),
            ..get("/")
        }
    }

    #[test]
    fn every_rule_refuses_what_it_should() {
        let status = |f: Facts| check(&f, T, 8000).map_err(|r| r.status);
        let rows: Vec<(&str, Facts, Result<Pass, u16>)> = vec![
            ("a page with the cookie", get("/"), Ok(Pass::Serve)),
            ("localhost is the same console", Facts { host: Some("localhost:8000"), ..get("/fleet") }, Ok(Pass::Serve)),
            ("an agent page", get("/agents/soc-agents/triage-bot"), Ok(Pass::Serve)),
            ("a request's story", get("/api/requests/soc-agents/r-1"), Ok(Pass::Serve)),
            ("a rebound DNS name", Facts { host: Some("evil.example:8000"), ..get("/") }, Err(403)),
            ("another port", Facts { host: Some("127.0.0.1:8001"), ..get("/") }, Err(403)),
            ("no Host", Facts { host: None, ..get("/") }, Err(403)),
            ("a path it does not serve", get("/etc/passwd"), Err(404)),
            ("a proxy to the API server", get("/api/v1/secrets"), Err(404)),
            ("too many segments", get("/agents/a/b/c"), Err(404)),
            ("an empty segment", get("/requests//x"), Err(404)),
            ("no token", Facts { cookie: None, ..get("/") }, Err(401)),
            ("a wrong token", Facts { cookie: Some("warden-console=0123456789abcdeX"), ..get("/") }, Err(401)),
            ("a shorter token", Facts { cookie: Some("warden-console=0123"), ..get("/") }, Err(401)),
            (
                "the URL token on a page",
                Facts { cookie: None, query: Some("token=0123456789abcdef"), ..get("/") },
                Ok(Pass::SetCookie),
            ),
            (
                "the URL token is not for the API",
                Facts { cookie: None, query: Some("token=0123456789abcdef"), ..get("/api/queue") },
                Err(401),
            ),
            ("a decision from its own page", post(), Ok(Pass::Serve)),
            ("a decision from another site", Facts { origin: Some("http://evil.example"), ..post() }, Err(403)),
            (
                "a decision from a page on another local port",
                Facts { origin: Some("http://127.0.0.1:9999"), ..post() },
                Err(403),
            ),
            ("a decision without Origin", Facts { origin: None, ..post() }, Err(403)),
            ("a form post", Facts { content_type: Some("application/x-www-form-urlencoded"), ..post() }, Err(415)),
            ("a text/plain post", Facts { content_type: Some("text/plain"), ..post() }, Err(415)),
            ("a decision without the cookie", Facts { cookie: None, ..post() }, Err(401)),
            (
                "a decision with the URL token only",
                Facts { cookie: None, query: Some("token=0123456789abcdef"), ..post() },
                Err(401),
            ),
            ("GET of the write endpoint", get("/api/decide"), Err(405)),
            ("a pause from its own page", Facts { path: "/api/act", ..post() }, Ok(Pass::Serve)),
            (
                "a pause from another site",
                Facts { path: "/api/act", origin: Some("http://evil.example"), ..post() },
                Err(403),
            ),
            ("POST to a page", Facts { path: "/", ..post() }, Err(405)),
            ("DELETE", Facts { method: "DELETE", ..get("/") }, Err(405)),
        ];
        for (case, facts, want) in rows {
            assert_eq!(status(facts), want, "{case}");
        }
    }

    #[test]
    fn the_links_in_notices_open_console_pages() {
        let mut n = socwarden_core::notify::Notice {
            namespace: "soc-agents".into(),
            agent: "triage-bot".into(),
            request: Some("isolate-web".into()),
            ..Default::default()
        };
        n.content = Some("ab".repeat(32));
        for _ in 0..2 {
            let link = socwarden_core::notify::link(Some("http://127.0.0.1:8181/"), &n).unwrap();
            let path = link.strip_prefix("http://127.0.0.1:8181").unwrap();
            // The query (a pending request's `seen`) is not part of the path the guard knows.
            let path = path.split('?').next().unwrap();
            assert_eq!(known("GET", path), Some(true), "{link}");
            n.request = None;
        }
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        assert_eq!(cookie_token("a=b; warden-console=xyz; c=d"), Some("xyz"));
        assert_eq!(cookie_token("warden-consolex=xyz"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
