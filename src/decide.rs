//! Decide: the step where a container is skipped, pushed or failed.
//!
//! The host's own verdict is the default decision. A policy module, when one is
//! configured, decides instead, from the [`Facts`]. Whatever it answers, the host
//! keeps its invariants: `push` carries out the host plan and nothing else,
//! `skip` writes nothing, and a module that cannot answer is a `fail` (the host
//! fails closed).

use std::sync::Arc;

use serde::Serialize;

use crate::facts::Facts;
use crate::plan::{Plan, Verdict};
use crate::policy::{Policy, PolicyHost};

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
    /// `host`, or `policy NAME VERSION`.
    pub by: String,
    /// What the policy logged while deciding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// A policy and its settings, as configured for a container.
#[derive(Clone)]
pub struct PolicyChoice {
    pub host: Arc<PolicyHost>,
    pub policy: Arc<Policy>,
    /// A JSON document (`{}` when none was given).
    pub settings: String,
}

impl PolicyChoice {
    pub fn by(&self) -> String {
        format!(
            "policy {} {}",
            self.policy.info.name, self.policy.info.version
        )
    }

    /// Checks the settings with the module. A rejection is a `fail`.
    pub fn validate(&self) -> Result<(), Decided> {
        let (host, policy, settings) = (&self.host, &self.policy, &self.settings);
        let res = std::thread::scope(|s| {
            s.spawn(|| host.validate_settings(policy, settings))
                .join()
                .expect("policy thread")
        });
        res.map_err(|e| Decided {
            decision: Decision::Fail(e.to_string()),
            by: self.by(),
            logs: vec![],
        })
    }
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
        logs: vec![],
    }
}

/// Decides for one container: the policy if there is one, else the host verdict.
pub fn decide(
    plan: &Plan,
    policy: Option<&PolicyChoice>,
    facts: impl FnOnce() -> Facts,
) -> Decided {
    let Some(choice) = policy else {
        return host_default(plan);
    };
    let facts = facts();
    // wasmtime-wasi's synchronous bindings must not run on an async worker thread.
    let res = std::thread::scope(|s| {
        s.spawn(|| choice.host.decide(&choice.policy, &facts))
            .join()
            .expect("policy thread")
    });
    match res {
        Ok((decision, logs)) => Decided {
            decision,
            by: choice.by(),
            logs,
        },
        Err(e) => Decided {
            decision: Decision::Fail(e.to_string()),
            by: choice.by(),
            logs: vec![],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(verdict: Verdict) -> Plan {
        Plan::nothing(verdict, "r".into())
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

    #[test]
    fn without_a_policy_no_facts_are_gathered() {
        let d = decide(&plan(Verdict::Push), None, || {
            panic!("facts gathered without a policy")
        });
        assert_eq!(d.by, "host");
    }
}
