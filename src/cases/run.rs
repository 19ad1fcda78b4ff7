//! Running a case: what a module answers for its facts and settings, and whether
//! that is what the case expects.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Expect, Kind, LoadedCase};
use crate::contract::Decision;
use crate::policy::{Policy, PolicyHost};

/// What a module answered for a case's facts and settings, as `push` would see it:
/// settings rejected or a module that cannot answer is a `fail`.
pub fn answer(host: &PolicyHost, policy: &Policy, case: &LoadedCase) -> Decision {
    let facts = case.facts();
    let settings = case.settings();
    std::thread::scope(|s| {
        s.spawn(|| match host.validate_settings(policy, &settings) {
            Err(e) => Decision::Fail(e.to_string()),
            Ok(()) => match host.decide(policy, &facts) {
                Ok((d, _logs)) => d,
                Err(e) => Decision::Fail(e.to_string()),
            },
        })
        .join()
        .expect("policy thread")
    })
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub passed: bool,
    pub expected: Expect,
    pub actual: Decision,
    /// What differs, for a failed case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<String>,
    #[serde(serialize_with = "millis")]
    pub time: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Runs one case.
pub fn run_case(host: &PolicyHost, policy: &Policy, case: &LoadedCase) -> CaseResult {
    let start = Instant::now();
    let actual = answer(host, policy, case);
    let time = start.elapsed();
    let expected = case.case.expect.clone();
    let kind_ok = Kind::of(&actual) == expected.decision;
    let reason_ok = case
        .reason
        .as_ref()
        .is_none_or(|re| re.is_match(Decision::reason(&actual)));
    let difference = (!(kind_ok && reason_ok)).then(|| {
        let want = match &expected.reason {
            Some(r) => format!("{} with a reason matching /{r}/", expected.decision.name()),
            None => expected.decision.name().to_string(),
        };
        format!(
            "expected {want}\n     got {}: {}",
            Kind::of(&actual).name(),
            Decision::reason(&actual)
        )
    });
    CaseResult {
        case: case.path.display().to_string(),
        passed: difference.is_none(),
        expected,
        actual,
        difference,
        time,
    }
}
