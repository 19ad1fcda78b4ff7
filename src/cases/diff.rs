//! `policy diff`: the cases whose decision changes between two versions of a policy.

use serde::Serialize;

use super::LoadedCase;
use super::run::answer;
use crate::contract::Decision;
use crate::policy::{Policy, PolicyHost};

/// One case whose decision differs between two versions of a policy.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub case: String,
    pub old: Decision,
    pub new: Decision,
}

/// Runs both modules over every case and returns the cases whose decision (kind
/// or reason) changed.
pub fn diff(host: &PolicyHost, old: &Policy, new: &Policy, cases: &[LoadedCase]) -> Vec<Change> {
    cases
        .iter()
        .filter_map(|c| {
            let (a, b) = (answer(host, old, c), answer(host, new, c));
            (comparable(&a, old) != comparable(&b, new)).then(|| Change {
                case: c.path.display().to_string(),
                old: a,
                new: b,
            })
        })
        .collect()
}

/// A decision with the module's name taken out of its reason: the host's own
/// reasons name the module file or reference (`policy module PATH rejected the
/// settings: ...`), and two builds of a policy sit at different paths (or a file
/// and its published artifact) without deciding differently.
fn comparable(d: &Decision, policy: &Policy) -> Decision {
    let strip = |r: &str| r.replace(policy.label(), "<module>");
    match d {
        Decision::Skip(r) => Decision::Skip(strip(r)),
        Decision::Push(r) => Decision::Push(strip(r)),
        Decision::Fail(r) => Decision::Fail(strip(r)),
    }
}
