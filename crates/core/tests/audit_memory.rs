//! What reading an audit batch costs is what it keeps, not its bytes (issue 28): a batch of 48 MB
//! of request objects is read with the process's peak memory growing by a small fraction of it.
//! Alone in its own test binary, so that the peak (`VmHWM`) is this test's. Linux only.

use jiff::Timestamp;
use socwarden_core::behaviour::audit;

/// The process's peak resident memory, in bytes.
fn peak() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<usize>().ok()? * 1024)
}

/// An EventList of `n` events of one agent, each with a request object of `pad` bytes, produced
/// as it is read.
struct Batch {
    n: usize,
    pad: usize,
    /// Position in the current event: 0 = head, 1..=pad = padding, then tail.
    event: usize,
    at: usize,
    started: bool,
    ended: bool,
}

const HEAD: &[u8] = br#"{"stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:agents:warden-bot"},"objectRef":{"resource":"configmaps","namespace":"web","name":"c"},"responseStatus":{"code":200},"requestObject":{"data":{"pad":""#;
const TAIL: &[u8] = br#""}}}"#;

impl std::io::Read for Batch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut w = 0;
        fn put(buf: &mut [u8], b: &[u8], w: &mut usize) {
            buf[*w..*w + b.len()].copy_from_slice(b);
            *w += b.len();
        }
        while w + HEAD.len() + 64 < buf.len() {
            if !self.started {
                self.started = true;
                put(buf, br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#, &mut w);
            } else if self.event == self.n {
                if !self.ended {
                    self.ended = true;
                    put(buf, b"]}", &mut w);
                }
                break;
            } else if self.at == 0 {
                if self.event > 0 {
                    put(buf, b",", &mut w);
                }
                put(buf, HEAD, &mut w);
                self.at = 1;
            } else if self.at <= self.pad {
                let n = (buf.len() - w - 64).min(self.pad + 1 - self.at);
                buf[w..w + n].fill(b'x');
                w += n;
                self.at += n;
            } else {
                put(buf, TAIL, &mut w);
                self.at = 0;
                self.event += 1;
            }
        }
        Ok(w)
    }
}

#[test]
fn a_batch_costs_what_it_keeps_not_its_bytes() {
    let (n, pad) = (48, 1 << 20);
    let before = peak().expect("/proc/self/status");
    let mut calls = 0;
    let events =
        audit::read(Batch { n, pad, event: 0, at: 0, started: false, ended: false }, Timestamp::UNIX_EPOCH, |p| {
            calls += p.len()
        })
        .expect("an EventList");
    let grew = peak().unwrap().saturating_sub(before);
    assert_eq!((events, calls), (n, n));
    println!("read {} MiB; peak memory grew {} KiB", n * pad >> 20, grew >> 10);
    assert!(grew < 8 << 20, "peak memory grew {grew} bytes reading {} bytes", n * pad);
}
