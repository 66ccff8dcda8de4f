//! Plain HTTP endpoints the tests start in place of a SOAR or EDR: what the operator's HTTP
//! executions reach.

use anyhow::{Result, bail};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Reads one HTTP/1.1 request from `s`: its head (request line and headers) and its body (as long
/// as its Content-Length says).
pub async fn read_request(s: &mut TcpStream) -> Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed early");
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len = header(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let body = &buf[end + 4..];
        if body.len() >= len {
            return Ok((head, body[..len].to_vec()));
        }
    }
}

/// The value of header `name` (case-insensitive) in a request head.
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
    })
}
