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
/// as it is read, 64 KiB at a time.
struct Batch {
    n: usize,
    pad: usize,
    /// Events produced, and padding bytes produced of the current one.
    event: usize,
    padded: usize,
    started: bool,
    piece: Vec<u8>,
    at: usize,
}

const HEAD: &[u8] = br#"{"stage":"ResponseComplete","verb":"update","user":{"username":"system:serviceaccount:agents:warden-bot"},"objectRef":{"resource":"configmaps","namespace":"web","name":"c"},"responseStatus":{"code":200},"requestObject":{"data":{"pad":""#;
const TAIL: &[u8] = br#""}}}"#;

impl Batch {
    fn new(n: usize, pad: usize) -> Self {
        Self { n, pad, event: 0, padded: 0, started: false, piece: Vec::new(), at: 0 }
    }

    /// The next piece of the list; empty at its end.
    fn next_piece(&mut self) -> Vec<u8> {
        if !self.started {
            self.started = true;
            return br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#.to_vec();
        }
        if self.event == self.n {
            self.event += 1;
            return b"]}".to_vec();
        }
        if self.event > self.n {
            return Vec::new();
        }
        if self.padded == 0 {
            self.padded = 1;
            return [if self.event > 0 { &b","[..] } else { &b""[..] }, HEAD].concat();
        }
        if self.padded <= self.pad {
            let n = (self.pad + 1 - self.padded).min(64 << 10);
            self.padded += n;
            return vec![b'x'; n];
        }
        self.padded = 0;
        self.event += 1;
        TAIL.to_vec()
    }
}

impl std::io::Read for Batch {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.piece.len() {
            self.piece = self.next_piece();
            self.at = 0;
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_batch_costs_what_it_keeps_not_its_bytes() {
    let (n, pad) = (48, 1 << 20);
    let before = peak().expect("/proc/self/status");
    let mut calls = 0;
    let events = audit::read(Batch::new(n, pad), Timestamp::UNIX_EPOCH, |p| calls += p.len()).expect("an EventList");
    let grew = peak().unwrap().saturating_sub(before);
    assert_eq!((events, calls), (n, n));
    println!("read {} MiB; peak memory grew {} KiB", (n * pad) >> 20, grew >> 10);
    assert!(grew < 8 << 20, "peak memory grew {grew} bytes reading {} bytes", n * pad);
}
