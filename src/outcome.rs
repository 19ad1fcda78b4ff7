//! What happened to a container, and how each kind of output spells it: a
//! plain word of its own, which the report, the decision log and the release
//! table all name (so none of them has to depend on another for it).

use serde::Serialize;

/// What happened to the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing to do: registry and meta.json already hold it.
    UpToDate,
    /// The registry held it; only meta.json was written.
    Recorded,
    /// Something was uploaded (and recorded).
    Pushed,
    /// A decision held the container back; nothing was written.
    Skipped,
    /// A decision (or a policy that could not answer) refused the container;
    /// nothing was written.
    Failed,
}

impl Outcome {
    /// How the JSON report and the decision log spell it (`up-to-date`, …).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::UpToDate => "up-to-date",
            Outcome::Recorded => "recorded",
            Outcome::Pushed => "pushed",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }

    /// The JSON `outcome`: what was done, or with `--dry-run`, for what a dry
    /// run does not do, what would be (`would-push`, `would-record`). An
    /// up-to-date, skipped or failed container is the same with or without
    /// `--dry-run` (nothing written, the same exit status), so it keeps its name.
    pub fn json_name(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Outcome::Pushed, true) => "would-push",
            (Outcome::Recorded, true) => "would-record",
            (o, _) => o.name(),
        }
    }

    /// What was done, or with `--dry-run` what would be done (never a past
    /// tense for what did not happen): a release summary's DECISION column, and
    /// the last word of the progress lines.
    pub fn decision_name(self, dry_run: bool) -> &'static str {
        if !dry_run {
            return self.name();
        }
        match self {
            Outcome::UpToDate => "up to date",
            Outcome::Recorded => "would record",
            Outcome::Pushed => "would push",
            Outcome::Skipped => "would skip",
            Outcome::Failed => "would fail",
        }
    }
}
