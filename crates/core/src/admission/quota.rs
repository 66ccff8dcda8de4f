//! How many requests an agent may file: a cap on the requests waiting for a decision and on the
//! filing rate (`AutonomyPolicy.spec.requests`), so that a prompt-injected agent cannot flood the
//! approvers' queue or the operator. Checked by the admission webhook; pure.

use socwarden_api::RequestQuota;

/// What an agent has filed: requests not decided yet, and requests filed in the last minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filing {
    pub undecided: usize,
    pub last_minute: usize,
}

/// Whether agent `agent` (under policy `policy`) may file one more request.
pub fn check(agent: &str, policy: &str, quota: &RequestQuota, f: Filing) -> Result<(), String> {
    if f.undecided >= quota.max_pending as usize {
        return Err(format!(
            "SocAgent {agent} has {} requests waiting for a decision; AutonomyPolicy {policy} allows {} (spec.requests.maxPending): wait for decisions before filing more",
            f.undecided, quota.max_pending
        ));
    }
    if f.last_minute >= quota.max_per_minute as usize {
        return Err(format!(
            "SocAgent {agent} filed {} requests in the last minute; AutonomyPolicy {policy} allows {} per minute (spec.requests.maxPerMinute): retry later",
            f.last_minute, quota.max_per_minute
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_and_the_rate_are_capped_with_the_reason() {
        let q = RequestQuota { max_pending: 2, max_per_minute: 5 };
        assert_eq!(check("bot", "default", &q, Filing { undecided: 1, last_minute: 4 }), Ok(()));
        let e = check("bot", "default", &q, Filing { undecided: 2, last_minute: 0 }).unwrap_err();
        assert!(e.contains("has 2 requests waiting") && e.contains("maxPending"), "{e}");
        let e = check("bot", "default", &q, Filing { undecided: 0, last_minute: 5 }).unwrap_err();
        assert!(e.contains("filed 5 requests in the last minute") && e.contains("maxPerMinute"), "{e}");
        assert_eq!(RequestQuota::default(), RequestQuota { max_pending: 20, max_per_minute: 60 });
    }
}
