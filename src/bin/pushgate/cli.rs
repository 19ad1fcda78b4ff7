//! The command line as clap reads it: the subcommands, the flag groups they share
//! (each declared once and flattened where used), the help headings, and the value
//! parsers that make a malformed flag value a usage error (exit 2) by calling the
//! library's own validators.

use std::path::PathBuf;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand};

use pushgate::policy::Limits;
use pushgate::registry::retry::parse_duration;
use pushgate::registry::{self, RetryPolicy};

use crate::policy::PolicyCommand;

/// The headings `--help` (and the man pages) group the options under.
pub(crate) mod heading {
    pub const TARGET: &str = "What to push";
    pub const RELEASE: &str = "What to release";
    pub const REGISTRY: &str = "Registry and credentials";
    pub const RETRIES: &str = "Retries and transfers";
    pub const POLICY: &str = "Policy";
    pub const OUTPUT: &str = "Output";
    pub const SIGNING: &str = "Signing";
}
use heading::*;

/// `pushgate --version`: the version, the git commit it was built from, the policy
/// contract versions it runs (newest first) and the wasmtime that runs the policies.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {})\npolicy contracts: {}\nwasmtime: {}",
        env!("CARGO_PKG_VERSION"),
        env!("PUSHGATE_GIT_COMMIT"),
        pushgate::policy::CONTRACTS.join(", "),
        env!("PUSHGATE_WASMTIME_VERSION"),
    )
});

/// Publish multi-arch container images from cosa builds, idempotently.
#[derive(Parser)]
#[command(name = "pushgate", version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("PUSHGATE_GIT_COMMIT"), ")"), long_version = LONG_VERSION.as_str(), about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Push a manifest list over per-arch images and record it in meta.json
    /// (a drop-in for `cosa push-container-manifest`).
    #[command(visible_alias = "push-container-manifest")]
    Push(Box<PushArgs>),
    /// Publish every container of a product in one run, from a release config
    Release(Box<ReleaseArgs>),
    /// Check that each tag's list and per-arch manifests are signed by a key,
    /// and that a signed attestation of the decision that published the list
    /// exists (who decided, with which policy module, when)
    Verify(Box<VerifyArgs>),
    /// Write, test and check policy modules, offline
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print a shell completion script, e.g. `pushgate completions bash >
    /// /etc/bash_completion.d/pushgate`
    Completions {
        /// bash, zsh, fish (or elvish, powershell)
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff), e.g. `pushgate man push | man -l -`, or write them all
    Man(ManArgs),
}

#[derive(Args)]
pub(crate) struct ManArgs {
    /// The subcommand whose page to print, e.g. `push` or `policy test`
    /// [default: pushgate(1), the overview]
    #[arg(value_name = "SUBCOMMAND")]
    pub(crate) path: Vec<String>,
    /// Write the page and those of all its subcommands (pushgate.1, pushgate-push.1,
    /// pushgate-policy-test.1, ...) to DIR, created if missing, instead of printing one
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,
}

/// What to push: the repository, its tags and the per-arch images, for `push` and
/// `policy facts` (cosa's flags, with cosa's meaning, but --workdir).
#[derive(Args)]
#[command(next_help_heading = TARGET)]
#[command(group = ArgGroup::new("source").required(true).args(["image", "artifact"]))]
pub(crate) struct TargetArgs {
    /// Repository to push to, e.g. quay.io/fedora/fedora-coreos
    #[arg(long, value_name = "REPO", value_parser = repo)]
    pub(crate) repo: registry::RepoName,
    /// Tag to point at the manifest list (repeat for several; the first is the main one)
    #[arg(long = "tag", value_name = "TAG", required = true, action = ArgAction::Append, value_parser = tag)]
    pub(crate) tags: Vec<String>,
    /// Image sources, one single-arch image each: oci-archive:PATH, oci:DIR or
    /// docker://REF (a tag or @sha256:DIGEST; its blobs are mounted when on the
    /// same registry, else streamed through)
    #[arg(long, value_name = "SRC", num_args = 1.., action = ArgAction::Append, value_parser = image)]
    pub(crate) image: Vec<String>,
    /// cosa artifact holding the per-arch OCI archives (images.NAME in meta.json), e.g. ostree
    #[arg(long, value_name = "NAME", requires = "metajsonname")]
    pub(crate) artifact: Option<String>,
    /// meta.json key to record the push under, e.g. base-oscontainer
    #[arg(long, value_name = "KEY", requires = "artifact")]
    pub(crate) metajsonname: Option<String>,
    /// Build id, or `latest`
    #[arg(
        long,
        value_name = "ID",
        default_value = "latest",
        requires = "artifact"
    )]
    pub(crate) build: String,
    /// Arches to push (repeatable): x86_64, aarch64, ppc64le, s390x, riscv64
    /// [default: every arch of the build that has the artifact]
    #[arg(long = "arch", value_name = "ARCH", action = ArgAction::Append, requires = "artifact", value_parser = arch)]
    pub(crate) arches: Vec<String>,
    /// cosa workdir (the directory holding builds/)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) workdir: PathBuf,
    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI
    #[arg(long)]
    pub(crate) v2s2: bool,
}

/// `--force` and `--dry-run`, for `push`, `release` and `policy facts`; their
/// heading is the flattening command's.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// Push and record even when the registry and meta.json are up to date
    #[arg(long)]
    pub(crate) force: bool,
    /// Observe, plan and decide, print the plan; write nothing anywhere
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// How a run reports, for `push` and `release`.
#[derive(Args)]
#[command(next_help_heading = OUTPUT)]
pub(crate) struct OutputArgs {
    /// Print one JSON object on stdout instead of the summary, failures included
    #[arg(long)]
    pub(crate) json: bool,
    /// Do not draw progress lines (they are drawn only on a terminal anyway)
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// How to reach the registry, for every command that talks to one.
#[derive(Args)]
#[command(next_help_heading = REGISTRY)]
pub(crate) struct RegistryArgs {
    /// containers auth.json with the registry credentials
    /// [default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json]
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Verify TLS certificates; --tls-verify=false is HTTPS without verification,
    /// falling back to plain HTTP only if the registry does not speak TLS
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    tls_verify: bool,
    /// CAs (*.crt) and a client certificate (*.cert + *.key) for the registry
    /// [default: certs.d: $PUSHGATE_CERTS_D/HOST:PORT, ~/.config/containers/certs.d,
    /// /etc/containers/certs.d, /etc/docker/certs.d]
    #[arg(long, value_name = "DIR")]
    cert_dir: Option<PathBuf>,
    /// Talk plain HTTP to the registry (credentials included, whatever the host)
    #[arg(long)]
    plain_http: bool,
    #[command(flatten)]
    retries: RetryArgs,
}

/// Retries and stalls, part of [`RegistryArgs`].
#[derive(Args)]
#[command(next_help_heading = RETRIES)]
struct RetryArgs {
    /// Retries of a request that failed transiently (no answer, 408, 429, 5xx)
    #[arg(long, value_name = "N", default_value_t = RetryPolicy::default().times, overrides_with = "retry_times")]
    retry_times: u32,
    /// The first wait before a retry; each later one doubles (a registry's
    /// Retry-After wins) [default: 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, overrides_with = "retry_delay")]
    retry_delay: Option<std::time::Duration>,
    /// A request that makes no progress for this long fails (and is retried);
    /// also the longest a manifest or token answer may take [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stall_timeout: Option<std::time::Duration>,
    /// Each request on stderr (method, URL, status, time, attempt; never a
    /// credential or token)
    #[arg(long)]
    debug: bool,
}

/// Parallel transfers, for the commands that move images (`push`, `release`,
/// `policy facts`, which checks blobs in parallel too).
#[derive(Args)]
#[command(next_help_heading = RETRIES)]
pub(crate) struct TransferArgs {
    /// Parallel uploads (and blob checks) of each container
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Blobs larger than this go up in chunks of this size (e.g. 16M), for a
    /// registry or proxy that caps request bodies; one that answers 413 gets
    /// halved chunks anyway [default: 64M]
    #[arg(long, value_name = "SIZE", env = "PUSHGATE_CHUNK_SIZE", value_parser = registry::parse_chunk_size)]
    chunk_size: Option<u64>,
}

impl RegistryArgs {
    pub(crate) fn options(&self) -> registry::Options {
        let defaults = registry::Options::default();
        let r = &self.retries;
        registry::Options {
            tls_verify: self.tls_verify,
            plain_http: self.plain_http,
            cert_dir: self.cert_dir.clone(),
            authfile: self.authfile.clone(),
            retry: RetryPolicy {
                times: r.retry_times,
                delay: r.retry_delay.unwrap_or(defaults.retry.delay),
                ..defaults.retry
            },
            debug: r.debug,
            observer: std::sync::Arc::new(pushgate::progress::Lines),
            stall_timeout: r.stall_timeout.unwrap_or(defaults.stall_timeout),
            ..defaults
        }
    }

    /// The options with `--jobs` too.
    pub(crate) fn with_transfers(&self, t: &TransferArgs) -> registry::Options {
        let options = self.options();
        registry::Options {
            jobs: t.jobs as usize,
            chunk_size: t.chunk_size.unwrap_or(options.chunk_size),
            ..options
        }
    }
}

/// Caps on every policy call (defaults no honest policy reaches).
#[derive(Args, Clone)]
#[command(next_help_heading = POLICY)]
pub(crate) struct PolicyLimitArgs {
    /// Fuel per policy call (roughly, wasm instructions)
    #[arg(long, value_name = "UNITS", default_value_t = Limits::default().fuel)]
    policy_fuel: u64,
    /// Memory per policy instance, in MiB
    #[arg(long, value_name = "MIB", default_value_t = Limits::default().memory >> 20)]
    policy_memory_mib: usize,
    /// Wall-clock time per policy call, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = Limits::default().deadline.as_millis() as u64)]
    policy_timeout_ms: u64,
}

impl PolicyLimitArgs {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            fuel: self.policy_fuel,
            memory: self.policy_memory_mib << 20,
            deadline: std::time::Duration::from_millis(self.policy_timeout_ms),
        }
    }
}

/// The policy that decides a push, for `push` and `policy facts`.
#[derive(Args)]
#[command(next_help_heading = POLICY)]
pub(crate) struct PolicyArgs {
    /// Policy module (a wasm32-wasip2 component) that decides skip / push / fail:
    /// a file, or a published one, oci://REGISTRY/REPO@sha256:… (or :TAG),
    /// fetched once, verified and cached
    #[arg(long, value_name = "FILE.wasm|oci://REF", value_parser = policy_module)]
    pub(crate) policy: Option<String>,
    /// Settings for the policy: a JSON document, or @FILE to read one
    #[arg(long, value_name = "JSON|@FILE", requires = "policy")]
    pub(crate) policy_settings: Option<String>,
    #[command(flatten)]
    pub(crate) limits: PolicyLimitArgs,
}

/// The decision log, for `push` and `release`.
#[derive(Args)]
#[command(next_help_heading = POLICY)]
pub(crate) struct DecisionLogArgs {
    /// Append one JSON line per container to FILE: the decision, who took it
    /// (policy name, version, sha256, or host), the facts' sha256, the outcome
    #[arg(long, value_name = "FILE")]
    pub(crate) decision_log: Option<PathBuf>,
    /// Log the facts themselves too (replayable with `policy facts --from-log`)
    #[arg(long, requires = "decision_log")]
    pub(crate) decision_log_facts: bool,
}

/// Signing what is published, for `push` and `release` (the flag names skopeo
/// and podman use).
#[derive(Args)]
#[command(next_help_heading = SIGNING)]
pub(crate) struct SignArgs {
    /// Sign the list and every per-arch manifest, for each tag, with this key
    /// (as `cosign generate-key-pair` or `skopeo generate-sigstore-key` write
    /// it), stored as cosign stores signatures, and attest each decision
    #[arg(long, value_name = "FILE")]
    pub(crate) sign_by_sigstore_private_key: Option<PathBuf>,
    /// The key's passphrase: the first line of FILE [default: an empty passphrase]
    #[arg(long, value_name = "FILE", requires = "sign_by_sigstore_private_key")]
    pub(crate) sign_passphrase_file: Option<PathBuf>,
}

impl SignArgs {
    /// The signing key, loaded before anything is written: the flag's, else
    /// `config`'s (a release config's key and passphrase file).
    pub(crate) fn signer(
        &self,
        config: Option<(&std::path::Path, Option<&std::path::Path>)>,
    ) -> anyhow::Result<Option<pushgate::evidence::Signer>> {
        let (key, passphrase) = match (&self.sign_by_sigstore_private_key, config) {
            (Some(k), _) => (k.as_path(), self.sign_passphrase_file.as_deref()),
            (None, Some((k, p))) => (k, p),
            (None, None) => return Ok(None),
        };
        let secret = match passphrase {
            Some(f) => pushgate::sign::read_passphrase_file(f)?,
            None => Default::default(),
        };
        let key = pushgate::sign::SigningKey::load(key, &secret)?;
        Ok(Some(std::sync::Arc::new(key)))
    }
}

/// The public keys the host may verify signatures with, for `push`, `release`
/// and `policy facts`.
#[derive(Args, Clone, Default)]
#[command(next_help_heading = SIGNING)]
pub(crate) struct TrustArgs {
    /// Trust this public key (PEM, as cosign.pub) under NAME: the signatures it
    /// verifies on the sources and at the tags become policy facts (by NAME),
    /// and it may vouch for a policy under --require-signed-policies; repeat
    /// for several
    #[arg(long = "trust-key", value_name = "NAME=FILE.pub", action = ArgAction::Append, value_parser = trust_key)]
    pub(crate) trust_keys: Vec<(String, PathBuf)>,
    /// Fail the container unless its policy, when from a registry (oci://),
    /// carries a valid signature by a trusted key (--trust-key), checked
    /// against the cached signature offline; a policy file is not affected
    #[arg(long, help_heading = POLICY)]
    pub(crate) require_signed_policies: bool,
}

impl TrustArgs {
    /// The keys the flags name, read.
    pub(crate) fn keys(&self) -> anyhow::Result<pushgate::sign::TrustedKeys> {
        pushgate::sign::TrustedKeys::load(&self.trust_keys, "--trust-key")
    }

    /// The flags' keys, then a release config's `[trust-keys]` (the flags win
    /// over a config's key of the same name).
    pub(crate) fn keys_with_config(
        &self,
        config: &[(String, PathBuf)],
        config_file: &std::path::Path,
    ) -> anyhow::Result<pushgate::sign::TrustedKeys> {
        let what = format!("{} [trust-keys]", config_file.display());
        let config = pushgate::sign::TrustedKeys::load(config, &what)?;
        Ok(self.keys()?.or(&config))
    }

    /// The keys a policy from a registry must be signed by, when signed
    /// policies are required: by the flag, or by the release config `config`
    /// (its `require-signed-policies`). They must not be empty: without one,
    /// the flag is a usage error, the config's an error naming the file.
    pub(crate) fn signed_policies(
        &self,
        keys: &pushgate::sign::TrustedKeys,
        config: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<pushgate::sign::TrustedKeys>> {
        if !keys.is_empty() {
            return Ok((self.require_signed_policies || config.is_some()).then(|| keys.clone()));
        }
        match (self.require_signed_policies, config) {
            (false, None) => Ok(None),
            (true, _) => Err(UsageError(
                "--require-signed-policies needs a key to trust: give --trust-key \
                 NAME=FILE.pub (or, for a release, a [trust-keys] table in its config)"
                    .to_string(),
            )
            .into()),
            (false, Some(path)) => anyhow::bail!(
                "{}: require-signed-policies needs a key to trust: add a [trust-keys] \
                 table, or give --trust-key NAME=FILE.pub",
                path.display()
            ),
        }
    }
}

/// A usage error found once the flags are read (exit 2, as clap's are).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `pushgate verify`.
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// Repository, e.g. quay.io/fedora/fedora-coreos
    #[arg(long, value_name = "REPO", value_parser = repo, help_heading = TARGET)]
    pub(crate) repo: registry::RepoName,
    /// Tag to verify (repeat for several)
    #[arg(long = "tag", value_name = "TAG", required = true, action = ArgAction::Append, value_parser = tag, help_heading = TARGET)]
    pub(crate) tags: Vec<String>,
    /// The public key (PEM `PUBLIC KEY`, as `cosign generate-key-pair` writes
    /// cosign.pub) the signatures and the attestation must verify with
    #[arg(long, value_name = "FILE", help_heading = TARGET)]
    pub(crate) key: PathBuf,
    /// Fail unless the decision was made by the policy module of this sha256
    #[arg(long, value_name = "HEX", help_heading = TARGET)]
    pub(crate) require_policy_sha256: Option<String>,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    /// Print one JSON object on stdout instead of the text
    #[arg(long, help_heading = OUTPUT)]
    pub(crate) json: bool,
}

/// `pushgate push`.
#[derive(Args)]
pub(crate) struct PushArgs {
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten, next_help_heading = TARGET)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    #[command(flatten)]
    pub(crate) transfers: TransferArgs,
    #[command(flatten)]
    pub(crate) policy: PolicyArgs,
    #[command(flatten)]
    pub(crate) log: DecisionLogArgs,
    #[command(flatten)]
    pub(crate) sign: SignArgs,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// Write the manifest list digest to FILE
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub(crate) write_digest_to_file: Option<PathBuf>,
}

/// `pushgate release`.
#[derive(Args)]
pub(crate) struct ReleaseArgs {
    /// Release config (TOML): the product's containers, with artifact and key (or
    /// images), repo, tags, policy and settings each; see examples/release.toml
    #[arg(long, value_name = "FILE", help_heading = RELEASE)]
    pub(crate) config: PathBuf,
    /// Build id, or `latest` [default: the config's build]
    #[arg(long, value_name = "ID", help_heading = RELEASE)]
    pub(crate) build: Option<String>,
    #[command(flatten, next_help_heading = RELEASE)]
    pub(crate) run: RunArgs,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    #[command(flatten)]
    pub(crate) transfers: TransferArgs,
    /// Parallel uploads over all the containers at once (each still at most
    /// --jobs), to cap the connections a release opens to a shared registry;
    /// wins over the config's total-jobs [default: none; up to 4 containers at
    /// once, --jobs each]
    #[arg(long, value_name = "N", help_heading = RETRIES, value_parser = clap::value_parser!(u16).range(1..=pushgate::release::MAX_TOTAL_JOBS as i64))]
    pub(crate) total_jobs: Option<u16>,
    /// Fail every container whose policy is a reference by tag
    /// (oci://REPO:TAG) rather than by digest (oci://REPO@sha256:…)
    #[arg(long, help_heading = POLICY)]
    pub(crate) require_pinned_policies: bool,
    #[command(flatten)]
    pub(crate) limits: PolicyLimitArgs,
    #[command(flatten)]
    pub(crate) log: DecisionLogArgs,
    #[command(flatten)]
    pub(crate) sign: SignArgs,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

// ------------------------------------------------------------------ value parsers
//
// Each checks a value's form with the library's own validator (what a run would
// refuse anyway), so that clap refuses it first, as the usage error it is. Only
// the form: whether a build, file or image exists is the run's to find out.

/// The library's error, without the `FLAG VALUE: ` it starts with (clap names
/// the flag and the value already).
fn reason(e: anyhow::Error, flag: &str, value: &str) -> String {
    let text = format!("{e:#}");
    let rest = text.strip_prefix(flag).map(str::trim_start);
    rest.and_then(|r| {
        r.strip_prefix(value)
            .or_else(|| r.strip_prefix(&format!("{value:?}")))
    })
    .and_then(|r| r.strip_prefix(": "))
    .map_or_else(|| text.clone(), str::to_string)
}

/// `--repo`: a repository name without tag or digest.
pub(crate) fn repo(s: &str) -> Result<registry::RepoName, String> {
    s.parse().map_err(|e| reason(e, "--repo", s))
}

/// `--tag`: the distribution spec's tag grammar.
pub(crate) fn tag(s: &str) -> Result<String, String> {
    registry::check_tag(s)
        .map(|()| s.to_string())
        .map_err(|e| reason(e, "--tag", s))
}

/// `--arch`: a cosa basearch.
pub(crate) fn arch(s: &str) -> Result<String, String> {
    match pushgate::arch::oci_arch(s) {
        Some(_) => Ok(s.to_string()),
        None => Err(format!(
            "not a cosa basearch (one of {})",
            pushgate::arch::BASEARCHES.join(", ")
        )),
    }
}

/// `--image`: a known transport, and for docker:// a well-formed reference.
pub(crate) fn image(s: &str) -> Result<String, String> {
    pushgate::sources::parse_origin(s)
        .map(|_| s.to_string())
        .map_err(|e| reason(e, "--image", s))
}

/// `--trust-key NAME=FILE.pub`.
pub(crate) fn trust_key(s: &str) -> Result<(String, PathBuf), String> {
    pushgate::sign::trust::parse_arg(s).map_err(|e| reason(e, "--trust-key", s))
}

/// A policy module: a file path, or a well-formed oci:// reference.
pub(crate) fn policy_module(s: &str) -> Result<String, String> {
    pushgate::policy::remote::PolicySource::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// A policy reference, oci://REGISTRY/REPO[:TAG|@sha256:…].
pub(crate) fn policy_reference(s: &str) -> Result<String, String> {
    pushgate::policy::remote::OciRef::parse(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// `policy new NAME`: a name the scaffold accepts.
pub(crate) fn policy_name(s: &str) -> Result<String, String> {
    pushgate::scaffold::check_name(s)
        .map(|()| s.to_string())
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_drops_the_flag_and_value_the_library_names() {
        let e = anyhow::anyhow!("--tag \"bad tag\": not a valid tag");
        assert_eq!(reason(e, "--tag", "bad tag"), "not a valid tag");
        let e = anyhow::anyhow!("--repo a:b: give a repository");
        assert_eq!(reason(e, "--repo", "a:b"), "give a repository");
        // anything else is kept whole
        let e = anyhow::anyhow!("something else");
        assert_eq!(reason(e, "--repo", "x"), "something else");
    }

    /// Every option and argument of every subcommand says what it is for.
    #[test]
    fn every_flag_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "pushgate", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
    }

    #[test]
    fn signed_policies_need_a_key_to_trust_and_are_asked_by_the_flag_or_the_config() {
        let none = pushgate::sign::TrustedKeys::default();
        let off = TrustArgs::default();
        assert!(off.signed_policies(&none, None).unwrap().is_none());
        let on = TrustArgs {
            require_signed_policies: true,
            ..TrustArgs::default()
        };
        let e = on.signed_policies(&none, None).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
        assert!(e.to_string().contains("--trust-key"), "{e}");
        let config = std::path::Path::new("release.toml");
        let e = off.signed_policies(&none, Some(config)).unwrap_err();
        assert!(e.downcast_ref::<UsageError>().is_none(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("release.toml") && text.contains("--trust-key"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let pem = {
            use p256::pkcs8::{EncodePublicKey, LineEnding};
            let secret = p256::SecretKey::from_slice(&[7; 32]).unwrap();
            secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap()
        };
        std::fs::write(dir.path().join("k.pub"), pem).unwrap();
        let keys = pushgate::sign::TrustedKeys::load(
            &[("build".into(), dir.path().join("k.pub"))],
            "--trust-key",
        )
        .unwrap();
        assert_eq!(
            on.signed_policies(&keys, None).unwrap().unwrap().names(),
            ["build"]
        );
        assert!(off.signed_policies(&keys, None).unwrap().is_none());
        assert!(off.signed_policies(&keys, Some(config)).unwrap().is_some());
    }

    #[test]
    fn value_parsers_accept_what_the_library_accepts() {
        assert!(repo("quay.io/fedora/fedora-coreos").is_ok());
        assert!(repo("UPPER/Case").is_err());
        assert!(repo("quay.io/x:tag").is_err());
        assert!(tag("41.20261127.1.0").is_ok());
        assert!(tag("-bad").is_err());
        for a in pushgate::arch::BASEARCHES {
            assert_eq!(arch(a), Ok(a.to_string()));
        }
        assert!(arch("sparc").unwrap_err().contains("x86_64"));
        assert!(arch("amd64").is_err(), "an OCI name is not a basearch");
        assert!(image("oci:dir").is_ok());
        assert!(image("dir:x").is_err());
        assert!(policy_module("p.wasm").is_ok());
        assert!(policy_module("oci://").is_err());
        assert!(policy_reference("p.wasm").is_err());
        assert!(policy_name("my-rules").is_ok());
        assert!(policy_name("My.Rules").is_err());
    }
}
