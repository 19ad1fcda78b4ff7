//! Decide: the step where a container is skipped, pushed or failed.
//!
//! The host's own verdict is the default decision. A policy module, when one is
//! configured, decides instead, from the [`Facts`]. Whatever it answers, the host
//! keeps its invariants: `push` carries out the host plan and nothing else,
//! `skip` writes nothing, and a module that cannot answer is a `fail` (the host
//! fails closed).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use serde::Serialize;

use crate::contract::{Decision, Facts, Verdict};
use crate::plan::Plan;
use crate::policy::remote::{self, PolicySource};
use crate::policy::{Policy, PolicyHost};
use crate::registry;

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
    /// The trusted keys whose signature on the module's artifact was verified
    /// before it was loaded (`--require-signed-policies`); `None` when no
    /// signature was required (a file, or a reference without the flag).
    pub signed_by: Option<Vec<String>>,
}

/// A policy-settings argument as given on the command line: a JSON document, or
/// `@FILE` to read one from FILE. `flag` names the argument in errors.
pub fn read_settings_arg(arg: &str, flag: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(file) => {
            std::fs::read_to_string(file).with_context(|| format!("{flag}: cannot read {file}"))
        }
        None => Ok(arg.to_string()),
    }
}

impl PolicyChoice {
    /// Loads the module at `path` into `host`, to decide with `settings` (a JSON
    /// document). Errors name the module.
    pub fn load(host: &Arc<PolicyHost>, path: &Path, settings: String) -> anyhow::Result<Self> {
        let policy = host.load(path)?;
        Ok(PolicyChoice {
            host: host.clone(),
            policy,
            settings,
            signed_by: None,
        })
    }

    /// Loads the module `source` names into `host`: a file, or a reference
    /// fetched (or found in the cache) and verified through `registry`. Errors
    /// name the file or the reference.
    pub async fn resolve(
        host: &Arc<PolicyHost>,
        source: &PolicySource,
        settings: String,
        registry: &registry::Options,
    ) -> anyhow::Result<Self> {
        let policy = match source {
            PolicySource::File(path) => host.load(path)?,
            PolicySource::Oci(r) => host.load_fetched(&remote::fetch(r, registry).await?)?,
        };
        Ok(PolicyChoice {
            host: host.clone(),
            policy,
            settings,
            signed_by: None,
        })
    }

    /// A module already fetched (a release fetches each reference once), loaded
    /// into `host`, with the keys its fetch verified the signature of.
    pub fn from_fetched(
        host: &Arc<PolicyHost>,
        fetched: &remote::Fetched,
        settings: String,
    ) -> anyhow::Result<Self> {
        Ok(PolicyChoice {
            host: host.clone(),
            policy: host.load_fetched(fetched)?,
            settings,
            signed_by: fetched.signed_by.clone(),
        })
    }

    /// The settings of a single push (`--policy-settings`): the argument
    /// (`None`: `{}`), which must be a JSON document.
    pub fn settings_for_push(settings: Option<&str>) -> anyhow::Result<String> {
        let settings = match settings {
            None => "{}".to_string(),
            Some(arg) => read_settings_arg(arg, "--policy-settings")?,
        };
        serde_json::from_str::<serde_json::Value>(&settings)
            .context("--policy-settings: not a JSON document")?;
        Ok(settings)
    }

    pub fn by(&self) -> String {
        format!(
            "policy {} {}",
            self.policy.info.name, self.policy.info.version
        )
    }

    /// Checks the settings with the module. A rejection is a `fail`.
    pub fn validate(&self) -> Result<(), Decided> {
        let (host, policy, settings) = (&self.host, &self.policy, &self.settings);
        host.validate_settings(policy, settings)
            .map_err(|e| Decided {
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
    match choice.host.decide(&choice.policy, &facts) {
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
