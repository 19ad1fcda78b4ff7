//! Conversion between the contract's plain data ([`crate::contract`]) and the
//! bindings generated from the WIT: the only place that sees both.

use super::bindings::exports::pushgate::policy::policy as guest;
use super::bindings::pushgate::policy::host;
use crate::contract::{Decision, Facts, Verdict};

pub(crate) fn level_name(l: host::Level) -> &'static str {
    match l {
        host::Level::Debug => "debug",
        host::Level::Info => "info",
        host::Level::Warn => "warn",
    }
}

pub(crate) fn from_wit(d: guest::Decision) -> Decision {
    match d {
        guest::Decision::Skip(r) => Decision::Skip(r),
        guest::Decision::Push(r) => Decision::Push(r),
        guest::Decision::Fail(r) => Decision::Fail(r),
    }
}

pub(crate) fn to_wit(f: &Facts) -> guest::Facts {
    use super::bindings::pushgate::policy::types as t;
    t::Facts {
        container: f.container.clone(),
        repo: f.repo.clone(),
        tags: f
            .tags
            .iter()
            .map(|x| t::TagFact {
                name: x.name.clone(),
                current: x.current.clone(),
                is_desired: x.is_desired,
            })
            .collect(),
        build_id: f.build_id.clone(),
        key: f.key.clone(),
        requested_arches: f.requested_arches.clone(),
        present_arches: f.present_arches.clone(),
        arches: f
            .arches
            .iter()
            .map(|a| t::ArchFact {
                arch: a.arch.clone(),
                has_key: a.has_key,
                recorded_digest: a.recorded_digest.clone(),
                desired_digest: a.desired_digest.clone(),
                registry_digest: a.registry_digest.clone(),
            })
            .collect(),
        desired_list_digest: f.desired_list_digest.clone(),
        verdict: match f.verdict {
            Verdict::UpToDate => t::Verdict::UpToDate,
            Verdict::RecordOnly => t::Verdict::RecordOnly,
            Verdict::Push => t::Verdict::Push,
        },
        verdict_reason: f.verdict_reason.clone(),
        force: f.force,
        dry_run: f.dry_run,
        settings: f.settings.clone(),
    }
}
