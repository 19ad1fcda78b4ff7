//! A test-only policy built against `pushgate:policy@9.0.0` (see `wit/`): a
//! contract version the host does not run. Loading it must fail, naming the
//! module and the version mismatch. Were it ever run, it would follow the
//! host's verdict.

wit_bindgen::generate!({
    path: "wit",
    world: "policy-module",
});

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::types::{Decision, Facts, PolicyMetadata, Verdict};

struct WrongVersionPolicy;

impl Guest for WrongVersionPolicy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "wrong-version".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test-only: exports pushgate:policy@9.0.0.".to_string(),
            settings_help: "Any JSON document.".to_string(),
            sample_settings: "{}".to_string(),
        }
    }

    fn validate_settings(_settings: String) -> Result<(), String> {
        Ok(())
    }

    fn decide(facts: Facts) -> Decision {
        match facts.verdict {
            Verdict::UpToDate => Decision::Skip(facts.verdict_reason),
            Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason),
        }
    }
}

export!(WrongVersionPolicy);
