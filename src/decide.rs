//! Decide: the step where a container is skipped, pushed or failed.
//!
//! The host's own verdict is the default decision; a policy module may override it
//! (within the host's invariants: it can hold back a push, never make the host
//! record what the registry does not hold).

use serde::Serialize;

use crate::plan::{Plan, Verdict};

/// What to do with one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "reason", rename_all = "kebab-case")]
pub enum Decision {
    /// Leave registry and meta.json untouched.
    Skip(String),
    /// Carry out the host plan.
    Push(String),
    /// Refuse the container: nothing is written, the run fails.
    Fail(String),
}

/// Who took the decision, for the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decided {
    pub decision: Decision,
    pub by: String,
}

/// The decision when no policy is configured: follow the host verdict.
pub fn host_default(plan: &Plan) -> Decided {
    let decision = match plan.verdict {
        Verdict::UpToDate => Decision::Skip(plan.reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(plan.reason.clone()),
    };
    Decided {
        decision,
        by: "host".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(verdict: Verdict) -> Plan {
        Plan {
            verdict,
            reason: "r".into(),
            blobs: vec![],
            manifests: vec![],
            list: false,
            tags: vec![],
            record: vec![],
        }
    }

    #[test]
    fn host_default_follows_the_verdict() {
        assert_eq!(
            host_default(&plan(Verdict::UpToDate)).decision,
            Decision::Skip("r".into())
        );
        assert_eq!(
            host_default(&plan(Verdict::RecordOnly)).decision,
            Decision::Push("r".into())
        );
        assert_eq!(
            host_default(&plan(Verdict::Push)).decision,
            Decision::Push("r".into())
        );
    }
}
