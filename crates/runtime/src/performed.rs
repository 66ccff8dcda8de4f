//! The writes an agent made under its requests (approved vs done), kept between the audit sink
//! that matched them (`records::check`) and the request's reconcile that writes them on its status.

use kube::runtime::reflector::ObjectRef;
use socwarden_api::ActionRequest;
use socwarden_core::behaviour::records::{self, Access};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// The writes each request covered, until its status shows them; and the wake of the request's
/// reconcile that writes them.
pub struct Performed {
    by_request: Mutex<HashMap<String, Vec<Access>>>,
    wake: mpsc::UnboundedSender<ObjectRef<ActionRequest>>,
}

impl Performed {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<ActionRequest>>) {
        let (wake, rx) = mpsc::unbounded_channel();
        (Self { by_request: Mutex::new(HashMap::new()), wake }, rx)
    }

    /// Wakes the reconcile of `request` (its action changed, say).
    pub fn wake(&self, request: ObjectRef<ActionRequest>) {
        let _ = self.wake.send(request);
    }

    pub(crate) fn add(&self, uid: String, request: ObjectRef<ActionRequest>, w: Access) {
        let mut map = self.by_request.lock().unwrap_or_else(|p| p.into_inner());
        let writes = map.entry(uid).or_default();
        // Bounded: beyond this, covered writes waiting for the status are not kept (nor counted).
        if writes.len() < 10 * records::MAX_KEPT {
            writes.push(w);
        }
        let _ = self.wake.send(request);
    }

    /// The writes waiting to reach the request's status.
    pub fn pending(&self, uid: &str) -> Vec<Access> {
        self.by_request.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned().unwrap_or_default()
    }

    /// The status showed the first `n` of them.
    pub fn recorded(&self, uid: &str, n: usize) {
        let mut map = self.by_request.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = map.get_mut(uid) {
            w.drain(..n.min(w.len()));
            if w.is_empty() {
                map.remove(uid);
            }
        }
    }
}
