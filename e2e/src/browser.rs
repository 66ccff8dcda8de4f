//! A real browser for the console's tests: Debian's headless Chromium driven by its chromedriver
//! through the W3C WebDriver protocol (a handful of JSON calls over loopback HTTP), plus `raw`, an
//! HTTP/1.1 client for what no browser sends on its own (a forged Host, a foreign Origin), and
//! `Console`, `kubectl warden console` run as one of the test identities.

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One HTTP/1.1 exchange on loopback, connection closed after it: (status, head, body).
pub async fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let read = async {
        // Read the head, then exactly Content-Length bytes (chromedriver keeps connections open).
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
                });
                if let Some(len) = len {
                    while buf.len() < end + 4 + len {
                        let n = s.read(&mut chunk).await?;
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    return Ok::<_, std::io::Error>(buf);
                }
            }
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(buf);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let buf = tokio::time::timeout(Duration::from_secs(30), read).await.context("no answer in 30 s")??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// Where the console tests put their screenshots (`target/e2e-artifacts`).
pub fn artifacts() -> PathBuf {
    let dir = crate::cluster::repo().join("target/e2e-artifacts");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// `kubectl warden console` running as `identity` (its own kubeconfig), stopped when dropped.
pub struct Console {
    child: Child,
    pub port: u16,
    /// The URL it printed, with the session token.
    pub url: String,
    pub token: String,
}

impl Console {
    pub fn start(identity: &str, args: &[&str]) -> Result<Self> {
        let bin = crate::operator::warden_bin().with_file_name("kubectl-warden");
        let kubeconfig = crate::cluster::cluster_dir().join(format!("{identity}.kubeconfig"));
        let mut child = Command::new(&bin)
            .arg("console")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().ok_or_else(|| anyhow!("the console exited before printing its URL"))??;
            if let Some(url) = line.trim().strip_prefix("http://") {
                break format!("http://{url}");
            }
        };
        // Keep reading so the console never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let port = url
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| anyhow!("no port in {url}"))?;
        let token = url.split("token=").nth(1).unwrap_or_default().to_string();
        Ok(Self { child, port, url, token })
    }

    /// The session cookie header, as the browser holds it after opening the URL.
    pub fn cookie(&self) -> String {
        format!("warden-console={}", self.token)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium with a fresh profile, driven through chromedriver; both stop when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let chromedriver = Path::new("/usr/bin/chromedriver");
        let chromium = Path::new("/usr/bin/chromium");
        if !chromedriver.exists() || !chromium.exists() {
            bail!(
                "Chromium and its driver are not installed: e2e/cluster deps installs Debian's chromium and chromium-driver"
            );
        }
        let port = crate::operator::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let profile = std::env::temp_dir().join(crate::fixtures::unique("console-browser"));
        let mut b = Browser { driver, port, session: String::new(), profile };
        crate::waiting::wait_for("chromedriver ready", Duration::from_secs(20), || async {
            Ok(b.call("GET", "/status", None).await.ok().filter(|v| v["ready"] == true).map(|_| ()))
        })
        .await?;
        // The flags the machine's closed network needs (no background fetches), no sandbox as root.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b.profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}}}});
        let v = b.call("POST", "/session", Some(caps)).await?;
        b.session = v["sessionId"].as_str().ok_or_else(|| anyhow!("no session: {v}"))?.to_string();
        Ok(b)
    }

    /// One WebDriver command; its `value`, or the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let body = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
        let headers = [("content-type", "application/json")];
        let (status, _, text) = raw(self.port, method, path, &headers, &body).await?;
        let v: Value = serde_json::from_str(&text).with_context(|| format!("{method} {path}: {status} {text}"))?;
        if status != 200 {
            bail!("{method} {path}: {status} {}", v["value"]["message"].as_str().unwrap_or(&text));
        }
        Ok(v["value"].clone())
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", &self.at("/url"), Some(json!({"url": url}))).await.map(|_| ())
    }

    /// Runs `script` in the page (`return …` gives a value).
    pub async fn script(&self, script: &str) -> Result<Value> {
        self.call("POST", &self.at("/execute/sync"), Some(json!({"script": script, "args": []}))).await
    }

    /// The elements matching a CSS selector (their WebDriver ids).
    pub async fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let v = self.call("POST", &self.at("/elements"), Some(json!({"using": "css selector", "value": css}))).await?;
        Ok(v.as_array().into_iter().flatten().filter_map(|e| e[ELEMENT].as_str().map(String::from)).collect())
    }

    /// Waits until `css` matches an element, and returns it.
    pub async fn wait_element(&self, css: &str, timeout: Duration) -> Result<String> {
        let r = crate::waiting::wait_for(&format!("an element {css}"), timeout, || async {
            Ok(self.find_all(css).await?.into_iter().next())
        })
        .await;
        match r {
            Ok(e) => Ok(e),
            Err(e) => {
                let (url, text) = (self.url().await.unwrap_or_default(), self.page_text().await.unwrap_or_default());
                Err(e.context(format!("the page at {url} shows:\n{text}")))
            }
        }
    }

    pub async fn text(&self, element: &str) -> Result<String> {
        Ok(self
            .call("GET", &self.at(&format!("/element/{element}/text")), None)
            .await?
            .as_str()
            .unwrap_or_default()
            .into())
    }

    /// Waits until the text of an element matching `css` satisfies `ok`, and returns it.
    pub async fn wait_text(&self, css: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> Result<String> {
        let last = std::sync::Mutex::new(String::new());
        let r = crate::waiting::wait_for(&format!("the text of {css}"), timeout, || async {
            for e in self.find_all(css).await? {
                let t = self.text(&e).await.unwrap_or_default();
                if ok(&t) {
                    return Ok(Some(t));
                }
                *last.lock().unwrap() = t;
            }
            Ok(None)
        })
        .await;
        let seen = last.lock().unwrap().clone();
        r.with_context(|| format!("last seen: {seen:?}"))
    }

    pub async fn click(&self, element: &str) -> Result<()> {
        self.call("POST", &self.at(&format!("/element/{element}/click")), Some(json!({}))).await.map(|_| ())
    }

    pub async fn type_into(&self, element: &str, text: &str) -> Result<()> {
        self.call("POST", &self.at(&format!("/element/{element}/value")), Some(json!({"text": text}))).await.map(|_| ())
    }

    /// The page's visible text.
    pub async fn page_text(&self) -> Result<String> {
        Ok(self.script("return document.body.innerText").await?.as_str().unwrap_or_default().to_string())
    }

    /// The address bar.
    pub async fn url(&self) -> Result<String> {
        Ok(self.call("GET", &self.at("/url"), None).await?.as_str().unwrap_or_default().to_string())
    }

    /// Saves a PNG of the viewport into the artifacts directory; returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf> {
        self.script("window.scrollTo(0, 0)").await?;
        let b64 = self.call("GET", &self.at("/screenshot"), None).await?;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap_or_default())?;
        let path = artifacts().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let (port, session) = (self.port, self.session.clone());
        // End the session (Chromium exits with it), from a thread: Drop cannot await.
        std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(raw(port, "DELETE", &format!("/session/{session}"), &[], b""));
            }
        })
        .join()
        .ok();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
