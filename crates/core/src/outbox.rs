//! Which notice a sink is sent next. A chat sink rate-limits (429) whoever floods it, and one
//! agent's stream of decisions must not crowd out the notice a person has to act on: each sink has
//! one outbox, delivered one notice at a time, **urgent** notices first (a request waiting for
//! approval or about to expire, a pause, a promotion waiting, the kill switch), retried for up to
//! an hour; **routine** ones (decisions, executions) after them, retried a few times, and past
//! `ROUTINE_MAX` waiting the oldest routine notice is dropped (counted). A failed delivery makes
//! the whole sink wait before the next try, so a rate-limited sink is not hammered. Pure.

use socwarden_api::NoticeKind;
use std::collections::VecDeque;
use std::time::Duration;

/// Routine notices waiting per sink; past this the oldest is dropped.
pub const ROUTINE_MAX: usize = 100;
/// Urgent notices waiting per sink; past this the oldest is dropped (a sink down for hours).
pub const URGENT_MAX: usize = 1000;
/// The longest wait between two tries.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Whether a notice of `kind` asks a person to act (or tells of containment).
pub fn urgent(kind: Option<NoticeKind>) -> bool {
    matches!(
        kind,
        Some(
            NoticeKind::RequestPending
                | NoticeKind::RequestExpiring
                | NoticeKind::AgentPaused
                | NoticeKind::PromotionPending
                | NoticeKind::KillSwitch
        )
    )
}

/// How long the sink waits after the `attempts`-th failed try of a notice, or `None` when the
/// notice is given up: routine ones after 5 tries (1+2+4+8+16 s), urgent ones after an hour of
/// tries (doubling waits up to a minute).
pub fn retry(urgent: bool, attempts: u32) -> Option<Duration> {
    let limit = if urgent { 66 } else { 5 };
    (attempts <= limit).then(|| Duration::from_secs(1u64 << attempts.saturating_sub(1).min(6)).min(MAX_DELAY))
}

/// A notice in an outbox, with its failed tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item<T> {
    pub notice: T,
    pub urgent: bool,
    pub attempts: u32,
}

/// One sink's notices waiting for delivery.
#[derive(Clone, Debug)]
pub struct Outbox<T> {
    urgent: VecDeque<Item<T>>,
    routine: VecDeque<Item<T>>,
}

impl<T> Default for Outbox<T> {
    fn default() -> Self {
        Self { urgent: VecDeque::new(), routine: VecDeque::new() }
    }
}

impl<T> Outbox<T> {
    /// Queues a notice; returns the one dropped to make room, if any.
    pub fn push(&mut self, notice: T, urgent: bool) -> Option<T> {
        let (queue, max) = if urgent { (&mut self.urgent, URGENT_MAX) } else { (&mut self.routine, ROUTINE_MAX) };
        queue.push_back(Item { notice, urgent, attempts: 0 });
        (queue.len() > max).then(|| queue.pop_front().map(|i| i.notice)).flatten()
    }

    /// The next notice to send: the oldest urgent one, else the oldest routine one.
    pub fn take(&mut self) -> Option<Item<T>> {
        self.urgent.pop_front().or_else(|| self.routine.pop_front())
    }

    /// Puts a notice whose try failed back at the head of its class.
    pub fn again(&mut self, item: Item<T>) {
        if item.urgent { self.urgent.push_front(item) } else { self.routine.push_front(item) }
    }

    pub fn len(&self) -> usize {
        self.urgent.len() + self.routine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_person_must_act_on_goes_first_and_a_flood_of_routine_notices_is_bounded() {
        let mut o = Outbox::default();
        let mut dropped = 0;
        for i in 0..ROUTINE_MAX + 50 {
            dropped += usize::from(o.push(format!("decided-{i}"), false).is_some());
        }
        assert_eq!(dropped, 50, "the oldest routine notices make room");
        assert_eq!(o.push("pending".to_string(), true), None);
        let first = o.take().unwrap();
        assert_eq!((first.notice.as_str(), first.urgent), ("pending", true), "ahead of the flood");
        assert_eq!(o.take().unwrap().notice, "decided-50", "then the oldest routine notice kept");
        // A failed try goes back to the head of its class, behind nothing urgent.
        let mut retried = o.take().unwrap();
        retried.attempts = 1;
        o.push("paused".to_string(), true);
        o.again(retried.clone());
        assert_eq!(o.take().unwrap().notice, "paused");
        assert_eq!(o.take().unwrap(), retried);
    }

    #[test]
    fn urgent_notices_are_retried_for_an_hour_routine_ones_five_times() {
        assert_eq!(retry(false, 1), Some(Duration::from_secs(1)));
        assert_eq!(retry(false, 5), Some(Duration::from_secs(16)));
        assert_eq!(retry(false, 6), None);
        let total: Duration = (1..=66).map(|a| retry(true, a).unwrap()).sum();
        assert!(total >= Duration::from_secs(3600), "{total:?}");
        assert_eq!(retry(true, 67), None);
        assert_eq!(retry(true, 30), Some(MAX_DELAY));
        for kind in [NoticeKind::RequestPending, NoticeKind::AgentPaused, NoticeKind::KillSwitch] {
            assert!(urgent(Some(kind)), "{kind:?}");
        }
        for kind in [NoticeKind::RequestDecided, NoticeKind::RequestExecuted, NoticeKind::AgentResumed] {
            assert!(!urgent(Some(kind)), "{kind:?}");
        }
    }
}
