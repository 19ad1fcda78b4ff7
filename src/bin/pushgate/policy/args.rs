//! The `pushgate policy ...` subcommands as clap reads them: their flags, the
//! groups they share with push (flattened from [`crate::cli`]), their headings.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::heading::{OUTPUT, POLICY, TARGET};
use crate::cli::{self, PolicyLimitArgs, RegistryArgs};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Run case files (facts, settings, expected decision) against a module, offline
    Test(TestArgs),
    /// Check that a module is fit for a release: contract, imports, metadata,
    /// settings, answers within the caps, same answer twice
    Check(CheckArgs),
    /// Show every case whose decision changes between two versions of a module
    Diff(DiffArgs),
    /// Observe a real build and registry (push's flags) and write the facts as a
    /// case file, without pushing anything
    Facts(Box<FactsArgs>),
    /// Create a policy crate: Cargo.toml, src with the contract wired, a passing case
    New(NewArgs),
    /// Show a module's metadata, contract version, size, sha256 and imports
    /// (a file, or oci://REF and the artifact it came in, with its signatures)
    Inspect(InspectArgs),
    /// Publish a module to a registry as an OCI artifact (oci://REGISTRY/REPO:TAG)
    /// and print its digest
    Push(PushArgs),
    /// Fetch a published module (oci://REGISTRY/REPO[:TAG|@sha256:…]) into the
    /// local cache, verified, and print the digest it resolved to
    Pull(PullArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// The policy module: a .wasm file, or oci://REGISTRY/REPO@sha256:… (or :TAG)
    #[arg(value_parser = cli::policy_module)]
    pub(super) module: String,
    /// Case files, or directories searched for *.json
    #[arg(required = true, value_name = "CASE")]
    pub(super) cases: Vec<PathBuf>,
    /// Print one JSON object instead of pass/FAIL lines
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    /// Also write JUnit XML to FILE
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub(super) junit: Option<PathBuf>,
    #[command(flatten)]
    pub(super) limits: PolicyLimitArgs,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The policy module: a .wasm file, or oci://REGISTRY/REPO@sha256:… (or :TAG)
    #[arg(value_parser = cli::policy_module)]
    pub(super) module: String,
    /// Settings to check with (JSON or @FILE) [default: the module's sample settings]
    #[arg(long, value_name = "JSON|@FILE", help_heading = POLICY)]
    pub(super) settings: Option<String>,
    /// Print one JSON object, {"ok", "report"}, instead of the report
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) limits: PolicyLimitArgs,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The old module: a .wasm file or an oci:// reference
    #[arg(value_parser = cli::policy_module)]
    pub(super) old: String,
    /// The new module: a .wasm file or an oci:// reference
    #[arg(value_parser = cli::policy_module)]
    pub(super) new: String,
    /// Case files, or directories searched for *.json
    #[arg(required = true, value_name = "CASE")]
    pub(super) cases: Vec<PathBuf>,
    /// Print one JSON object (old, new, cases, changed) instead of the changes
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    /// Exit 1 when any decision changed (for CI gates that want a reviewer)
    #[arg(long, help_heading = OUTPUT)]
    pub(super) fail_on_change: bool,
    #[command(flatten)]
    pub(super) limits: PolicyLimitArgs,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

/// What `policy facts` observes: a push as push's flags describe it, minus what
/// only a push does (writing the digest, the decision log, --json).
#[derive(Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub(super) target: cli::TargetArgs,
    #[command(flatten, next_help_heading = TARGET)]
    pub(super) run: cli::RunArgs,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
    #[command(flatten)]
    pub(super) transfers: cli::TransferArgs,
    #[command(flatten)]
    pub(super) policy: cli::PolicyArgs,
    #[command(flatten)]
    pub(super) trust: cli::TrustArgs,
}

#[derive(Args)]
#[command(
    after_help = "With --from-log LOG instead of push's flags: every line of a decision log \
that holds facts (logged with --decision-log-facts) becomes a case, expecting the decision \
logged; with --out DIR they are written there, and `pushgate policy test MODULE DIR` \
replays them.",
    // --from-log stands for all of push's flags: what they require, it gives.
    mut_arg("repo", |a| a.required(false).required_unless_present("from_log")),
    mut_arg("tags", |a| a.required(false).required_unless_present("from_log")),
    mut_group("source", |g| g.arg("from_log")),
    // In facts, --force and --dry-run say what push is observed: the facts'
    // `force` and `dry-run` (and --force's verdict) are theirs.
    mut_arg("force", |a| a.help("Observe a push with --force: the facts say `force`, and the verdict is push")),
    mut_arg("dry_run", |a| a.help("Observe a push with --dry-run: the facts say `dry-run`")),
    // clap leaves the group of a struct with flattened parts empty; `push` is
    // Some when these are given (and one of them is, unless --from-log is).
    mut_group("ObserveArgs", |g| g.args(["repo", "tags", "image", "artifact", "force", "dry_run", "policy"])),
)]
pub struct FactsArgs {
    /// Push's flags: the push whose facts are wanted (not with --from-log)
    #[command(flatten)]
    pub(super) push: Option<ObserveArgs>,
    /// Do not draw progress lines (they are drawn only on a terminal anyway)
    #[arg(long, short, help_heading = OUTPUT)]
    pub(super) quiet: bool,
    /// Write the case here [default: stdout]; with --from-log, the directory the cases go
    /// to (created if missing)
    #[arg(long, short, value_name = "FILE", help_heading = OUTPUT)]
    pub(super) out: Option<PathBuf>,
    /// Instead of push's flags: the cases of a decision log written with
    /// --decision-log-facts
    #[arg(
        long,
        value_name = "LOG",
        conflicts_with = "ObserveArgs",
        help_heading = "Replaying a decision log"
    )]
    pub(super) from_log: Option<PathBuf>,
    /// With --from-log: only the line with this decision id
    #[arg(
        long,
        value_name = "ID",
        requires = "from_log",
        help_heading = "Replaying a decision log"
    )]
    pub(super) decision_id: Option<String>,
}

#[derive(Args)]
pub struct NewArgs {
    /// The policy's name (a crate is created in a directory of that name): lowercase
    /// letters, digits, '-' and '_', starting with a letter
    #[arg(value_parser = cli::policy_name)]
    pub(super) name: String,
    /// Create it under DIR
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(super) dir: PathBuf,
}

#[derive(Args)]
pub struct InspectArgs {
    /// The policy module: a .wasm file, or oci://REGISTRY/REPO[:TAG|@sha256:…]
    #[arg(value_parser = cli::policy_module)]
    pub(super) module: String,
    /// Print one JSON object (the module's metadata, sha256, imports, ...)
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    /// For oci://: check the artifact's signatures with this public key (PEM, as
    /// cosign.pub) under NAME, showing which trusted keys signed it and why each
    /// other signature does not count; repeat for several [default: only count them]
    #[arg(long = "trust-key", value_name = "NAME=FILE.pub", action = clap::ArgAction::Append, value_parser = cli::trust_key)]
    pub(super) trust_keys: Vec<(String, PathBuf)>,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

#[derive(Args)]
#[command(mut_arg("sign_by_sigstore_private_key", |a| a.help(
    "Sign the artifact's digest for REGISTRY/REPO:TAG with this key (as `cosign \
     generate-key-pair` or `skopeo generate-sigstore-key` write it), stored as cosign \
     stores signatures (the sha256-<hex>.sig tag), once: a re-push adds no second \
     signature; what --require-signed-policies checks"
)))]
pub struct PushArgs {
    /// The policy module (.wasm) to publish; it must load
    pub(super) module: PathBuf,
    /// Where: oci://REGISTRY/REPO:TAG
    #[arg(value_parser = cli::policy_reference)]
    pub(super) reference: String,
    /// Print one JSON object, {"ok", "published"}
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
    #[command(flatten)]
    pub(super) sign: cli::SignArgs,
}

#[derive(Args)]
#[command(
    mut_arg("trust_keys", |a| a.help(
        "Trust this public key (PEM, as cosign.pub) under NAME, for \
         --require-signed-policies; repeat for several"
    )),
    mut_arg("require_signed_policies", |a| a.help(
        "Fail unless the artifact carries a valid signature by a trusted key (--trust-key); \
         the signatures are cached with the module either way, for offline runs"
    )),
)]
pub struct PullArgs {
    /// oci://REGISTRY/REPO[:TAG|@sha256:…] (without either, :latest)
    #[arg(value_parser = cli::policy_reference)]
    pub(super) reference: String,
    /// Print one JSON object (reference, digest, pinned, policy, cached, signatures)
    #[arg(long, help_heading = OUTPUT)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) registry: RegistryArgs,
    #[command(flatten)]
    pub(super) trust: cli::TrustArgs,
}

impl PolicyCommand {
    /// Whether the command was asked for JSON (for the failure object).
    pub fn json(&self) -> bool {
        match self {
            PolicyCommand::Test(a) => a.json,
            PolicyCommand::Check(a) => a.json,
            PolicyCommand::Diff(a) => a.json,
            PolicyCommand::Inspect(a) => a.json,
            PolicyCommand::Push(a) => a.json,
            PolicyCommand::Pull(a) => a.json,
            PolicyCommand::Facts(_) | PolicyCommand::New(_) => false,
        }
    }
}
