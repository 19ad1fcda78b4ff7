//! `pushgate release`: every container of a product in one run, from a config file.
//!
//! Each container goes through the same pipeline as `pushgate push`, several at
//! once. They share one policy host (a module used by several containers is
//! compiled once) and one registry client per registry; each uploads `--jobs`
//! blobs at once, as it would pushed alone, and `--total-jobs` bounds them all
//! when a shared registry wants fewer connections. A container that fails does not stop the others; the run fails at the
//! end if any did. Reports and the summary are in config order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::decide::PolicyChoice;
use crate::decision_log::{DecisionLog, LoggedPolicy, Subject, Trace};
use crate::policy::PolicyHost;
use crate::policy::remote::{self, PolicySource};
use crate::push::{PushRequest, push};
use crate::registry::{self, RepoName};
use crate::report::{Outcome, Report};
use crate::sources::SourceSpec;

/// A release config file (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseConfig {
    /// cosa workdir; relative paths are relative to the config file.
    #[serde(default = "default_workdir")]
    pub workdir: PathBuf,
    /// Build id or `latest`; `--build` overrides it.
    #[serde(default = "default_build")]
    pub build: String,
    #[serde(default)]
    pub v2s2: bool,
    /// Sign every container with this key (cosign's or skopeo's encrypted
    /// key file), as `--sign-by-sigstore-private-key` does; relative to the
    /// config file.
    #[serde(rename = "sign-by-sigstore-private-key")]
    pub sign_key: Option<PathBuf>,
    /// The key's passphrase, first line of this file (`--sign-passphrase-file`).
    #[serde(rename = "sign-passphrase-file")]
    pub sign_passphrase_file: Option<PathBuf>,
    /// Public keys the host verifies signatures with, by name (as
    /// `--trust-key NAME=FILE.pub`); relative to the config file.
    #[serde(default, rename = "trust-keys")]
    pub trust_keys: BTreeMap<String, PathBuf>,
    /// Fail every container whose policy, from a registry, carries no valid
    /// signature by a trusted key (as `--require-signed-policies` does).
    #[serde(default, rename = "require-signed-policies")]
    pub require_signed_policies: bool,
    /// Uploads at once over all the containers (as `--total-jobs`, which
    /// wins): the release owner's cap for a registry that limits connections.
    #[serde(rename = "total-jobs")]
    pub total_jobs: Option<usize>,
    #[serde(rename = "container")]
    pub containers: Vec<ContainerConfig>,
}

/// The most `total-jobs` (and `--total-jobs`) may say.
pub const MAX_TOTAL_JOBS: usize = 256;

/// One container of the release.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ContainerConfig {
    pub name: String,
    /// The cosa artifact (`--artifact`); or `images`.
    pub artifact: Option<String>,
    /// meta.json key (cosa's `--metajsonname`), with `artifact`.
    pub key: Option<String>,
    /// Instead of `artifact` and `key`: the images the list is assembled from,
    /// as `--image` takes them (a promotion of staging images,
    /// `docker://REGISTRY/REPO@sha256:…` per arch); `{build}` is replaced by
    /// the build id. Nothing is recorded in meta.json for them.
    #[serde(default)]
    pub images: Vec<String>,
    pub repo: String,
    /// Tags; `{build}` is replaced by the build id.
    pub tags: Vec<String>,
    #[serde(default)]
    pub arches: Vec<String>,
    pub v2s2: Option<bool>,
    /// Policy module: a file path (relative to the config file), or a reference
    /// `oci://REGISTRY/REPO@sha256:…` (or `:TAG`).
    pub policy: Option<String>,
    /// `policy`, parsed (when the config is read).
    #[serde(skip)]
    pub policy_source: Option<PolicySource>,
    /// Settings for the policy, any TOML table (given to the module as JSON).
    pub settings: Option<toml::Table>,
}

fn default_workdir() -> PathBuf {
    PathBuf::from(".")
}

fn default_build() -> String {
    "latest".into()
}

impl ReleaseConfig {
    /// The `[trust-keys]` table as (name, file) pairs, in name order.
    pub fn trust_keys(&self) -> Vec<(String, PathBuf)> {
        self.trust_keys
            .iter()
            .map(|(n, f)| (n.clone(), f.clone()))
            .collect()
    }

    pub fn read(path: &Path) -> Result<ReleaseConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read release config {}", path.display()))?;
        let mut cfg: ReleaseConfig = toml::from_str(&text)
            .with_context(|| format!("malformed release config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.workdir = base.join(&cfg.workdir);
        cfg.sign_key = cfg.sign_key.map(|k| base.join(k));
        cfg.sign_passphrase_file = cfg.sign_passphrase_file.map(|f| base.join(f));
        for file in cfg.trust_keys.values_mut() {
            *file = base.join(&*file);
        }
        if let Some(n) = cfg.total_jobs
            && !(1..=MAX_TOTAL_JOBS).contains(&n)
        {
            bail!(
                "{}: total-jobs = {n}: give a number of uploads from 1 to {MAX_TOTAL_JOBS}",
                path.display()
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &mut cfg.containers {
            if !names.insert(c.name.clone()) {
                bail!(
                    "{}: container {:?} is defined twice",
                    path.display(),
                    c.name
                );
            }
            if c.tags.is_empty() {
                bail!("{}: container {:?} has no tags", path.display(), c.name);
            }
            match (&c.artifact, &c.key, c.images.is_empty()) {
                (Some(_), Some(_), true) | (None, None, false) => {}
                (_, _, false) => bail!(
                    "{}: container {:?} names images and an artifact or key: give \
                     `images`, or `artifact` and `key`",
                    path.display(),
                    c.name
                ),
                (artifact, _, true) => bail!(
                    "{}: container {:?} has no `{}`: give `artifact` and `key` (a cosa \
                     artifact and its meta.json key), or `images`",
                    path.display(),
                    c.name,
                    if artifact.is_none() {
                        "artifact"
                    } else {
                        "key"
                    }
                ),
            }
            for image in &c.images {
                crate::sources::parse_origin(image)
                    .with_context(|| format!("{}: container {:?}", path.display(), c.name))?;
            }
            if let Some(p) = &c.policy {
                let source = PolicySource::parse(p)
                    .with_context(|| format!("{}: container {:?}", path.display(), c.name))?;
                c.policy_source = Some(source.relative_to(base));
            }
        }
        if cfg.containers.is_empty() {
            bail!("{}: no [[container]] defined", path.display());
        }
        Ok(cfg)
    }
}

/// One row of the summary.
pub struct ContainerResult {
    pub name: String,
    /// The report, or the error that stopped the container.
    pub result: Result<Report>,
}

impl ContainerResult {
    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok(r) if !r.failed())
    }
}

/// Options that apply to every container.
pub struct ReleaseOptions {
    pub build: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    pub registry: registry::Options,
    pub policy_limits: crate::policy::Limits,
    pub progress: bool,
    /// Refuse (fail) a container whose policy is a reference by tag.
    pub require_pinned_policies: bool,
    /// Refuse (fail) a container whose policy is a reference to an artifact
    /// without a valid signature by one of [`trusted`](Self::trusted).
    pub require_signed_policies: bool,
    pub decision_log: Option<Arc<DecisionLog>>,
    /// The signing key (the flag's, else the config's), loaded before anything
    /// is written.
    pub signer: Option<crate::evidence::Signer>,
    /// `--trust-key`s and the config's `[trust-keys]`.
    pub trusted: crate::sign::TrustedKeys,
}

/// Publishes every container, in parallel; the results are in config order.
pub async fn release(cfg: &ReleaseConfig, opts: &ReleaseOptions) -> Result<Vec<ContainerResult>> {
    let build = opts.build.clone().unwrap_or_else(|| cfg.build.clone());
    // Resolve `latest` once, so every container publishes the same build even if
    // a new build lands mid-run. A release of images alone, none naming
    // `{build}`, needs no cosa workdir.
    let uses_build = cfg.containers.iter().any(|c| {
        c.artifact.is_some()
            || c.tags
                .iter()
                .chain(&c.images)
                .any(|t| t.contains("{build}"))
    });
    let build = if uses_build {
        crate::sources::cosa::Workdir::new(&cfg.workdir)
            .resolve_build(&build)?
            .id
    } else {
        build
    };
    let needs_host = cfg.containers.iter().any(|c| c.policy_source.is_some());
    let host = if needs_host {
        Some(Arc::new(PolicyHost::new(opts.policy_limits)?))
    } else {
        None
    };
    // Each reference is fetched once per run, so containers naming the same tag
    // get the same module even if the tag moves mid-run.
    let fetched = tokio::sync::Mutex::new(Fetches::new());
    // Containers go in parallel (each with its own `--jobs`, all within
    // `--total-jobs` if given, through the run's upload slots); results come
    // back in config order.
    let results = futures_util::stream::iter(&cfg.containers)
        .map(|c| {
            let (build, host, fetched) = (&build, host.as_ref(), &fetched);
            async move {
                ContainerResult {
                    name: c.name.clone(),
                    result: run_one(cfg, c, build, host, opts, fetched).await,
                }
            }
        })
        .buffered(PARALLEL_CONTAINERS)
        .collect()
        .await;
    Ok(results)
}

/// How many containers of a release are under way at once: with `--jobs` each,
/// the most uploads a release makes at once unless `--total-jobs` says fewer
/// (the registry client keeps as many connections). It bounds the reads, plans
/// and meta.json writes around them too.
const PARALLEL_CONTAINERS: usize = 4;

/// The references fetched so far in a run (or why they could not be).
type Fetches = BTreeMap<String, std::result::Result<Arc<remote::Fetched>, String>>;

async fn run_one(
    cfg: &ReleaseConfig,
    c: &ContainerConfig,
    build: &str,
    host: Option<&Arc<PolicyHost>>,
    opts: &ReleaseOptions,
    fetches: &tokio::sync::Mutex<Fetches>,
) -> Result<Report> {
    let tags: Vec<String> = c.tags.iter().map(|t| t.replace("{build}", build)).collect();
    let repo = match c.repo.parse::<RepoName>() {
        Ok(repo) => repo,
        Err(e) => return Err(log_bad_repo(c, &tags, opts, e)),
    };
    let mut req = PushRequest {
        container: c.name.clone(),
        repo,
        tags,
        source: match (&c.artifact, &c.key) {
            (Some(artifact), Some(key)) => SourceSpec::Artifact {
                workdir: cfg.workdir.clone(),
                artifact: artifact.clone(),
                key: key.clone(),
                build: build.to_string(),
                arches: c.arches.clone(),
            },
            _ => SourceSpec::Images(
                c.images
                    .iter()
                    .map(|i| i.replace("{build}", build))
                    .collect(),
            ),
        },
        v2s2: c.v2s2.unwrap_or(cfg.v2s2),
        force: opts.force,
        dry_run: opts.dry_run,
        registry: opts.registry.clone(),
        digest_file: None,
        policy: None,
        progress: opts.progress,
        decision_log: opts.decision_log.clone(),
        signer: opts.signer.clone(),
        trusted: opts.trusted.clone(),
    };
    if let (Some(source), Some(host)) = (&c.policy_source, host) {
        let settings = match &c.settings {
            Some(t) => serde_json::to_string(t).expect("a TOML table is JSON"),
            None => "{}".into(),
        };
        match source {
            PolicySource::Oci(r) if opts.require_pinned_policies && !r.is_pinned() => {
                let e = anyhow::anyhow!(
                    "policy {r} is not pinned by digest, and --require-pinned-policies \
                     refuses it: name it as oci://{}@sha256:… (`pushgate policy pull {r}` \
                     prints the digest)",
                    r.repo()
                );
                return crate::push::refuse(&req, &source.to_string(), &e);
            }
            // A file that does not load is an error of the config, as it always
            // was; a reference that cannot be had (unreachable, unknown, not a
            // policy, mismatched) is a `fail` of the container, reported and
            // logged like a policy's own.
            PolicySource::File(path) => match PolicyChoice::load(host, path, settings) {
                Ok(choice) => req.policy = Some(choice),
                Err(e) => {
                    let e = e.context(format!("container {}", c.name));
                    return Err(crate::push::log_stopped(&req, &source.to_string(), e));
                }
            },
            PolicySource::Oci(r) => {
                let key = r.to_string();
                let fetched = {
                    // Held across the fetch: a second container naming the same
                    // reference waits for the first one's answer.
                    let mut fetches = fetches.lock().await;
                    if !fetches.contains_key(&key) {
                        let signed_by = opts.require_signed_policies.then_some(&opts.trusted);
                        let f =
                            crate::signed_policy::fetch_checked(r, &opts.registry, signed_by).await;
                        fetches.insert(key.clone(), f.map(Arc::new).map_err(|e| format!("{e:#}")));
                    }
                    fetches[&key].clone()
                };
                let choice = match &fetched {
                    Ok(f) => PolicyChoice::from_fetched(host, f, settings),
                    Err(e) => Err(anyhow::anyhow!("{e}")),
                };
                match choice {
                    Ok(choice) => req.policy = Some(choice),
                    Err(e) => return crate::push::refuse(&req, &key, &e),
                }
            }
        }
    }
    push(&req)
        .await
        .with_context(|| format!("container {}", c.name))
}

/// Logs a container whose `repo` is not a repository as stopped before it
/// ran (its policy not loaded), and gives the error back, naming the
/// container; a log that cannot be written wins.
fn log_bad_repo(
    c: &ContainerConfig,
    tags: &[String],
    opts: &ReleaseOptions,
    error: anyhow::Error,
) -> anyhow::Error {
    if let Some(log) = &opts.decision_log {
        let policy = c.policy_source.as_ref().map(ToString::to_string);
        let subject = Subject {
            container: &c.name,
            repo: &c.repo,
            tags,
            dry_run: opts.dry_run,
            policy: LoggedPolicy::of(None, policy.as_deref()),
        };
        if let Err(e) = log.record(subject, &Trace::default(), Err(&error)) {
            return e;
        }
    }
    error.context(format!("container {}", c.name))
}

/// The summary table printed at the end of a release.
pub fn summary(results: &[ContainerResult]) -> String {
    let rows: Vec<[String; 4]> = results
        .iter()
        .map(|r| match &r.result {
            Ok(rep) => {
                // The list digest only when the registry serves it: a failed or
                // skipped container's desired list was never pushed.
                let published = matches!(
                    rep.outcome,
                    Outcome::UpToDate | Outcome::Recorded | Outcome::Pushed
                ) && !rep.dry_run;
                let digest = match (&rep.manifest_list_digest, published) {
                    (Some(d), true) => d.to_string(),
                    _ => "-".into(),
                };
                [
                    r.name.clone(),
                    rep.outcome.decision_name(rep.dry_run).to_string(),
                    digest,
                    rep.reason.clone(),
                ]
            }
            Err(e) => [r.name.clone(), "error".into(), "-".into(), format!("{e:#}")],
        })
        .collect();
    let header = ["CONTAINER", "DECISION", "LIST DIGEST", "REASON"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for r in std::iter::once(&header.map(String::from)).chain(&rows) {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {}\n",
            r[0], r[1], r[2], r[3]
        ));
    }
    out
}

/// The `--json` document's fields (docs/json.md): `results` holds one object
/// per container in config order, each naming its container: the report, or
/// for a container stopped by an error, `outcome` `error` and the error.
pub fn json(results: &[ContainerResult], dry_run: bool) -> serde_json::Value {
    let ok = results.iter().all(ContainerResult::ok);
    let results: Vec<serde_json::Value> = results
        .iter()
        .map(|r| match &r.result {
            Ok(rep) => rep.json(),
            Err(e) => serde_json::json!({
                "schema": crate::report::JSON_SCHEMA,
                "ok": false,
                "container": r.name,
                "outcome": "error",
                "error": format!("{e:#}"),
            }),
        })
        .collect();
    serde_json::json!({
        "schema": crate::report::JSON_SCHEMA,
        "ok": ok,
        "dry_run": dry_run,
        "containers": results.iter().map(|r| r["container"].clone()).collect::<Vec<_>>(),
        "results": results,
    })
}

#[cfg(test)]
mod tests {
    use super::{ContainerResult, json};
    use crate::registry::RepoName;
    use crate::report::{Outcome, Report};

    fn report(name: &str, outcome: Outcome, dry_run: bool) -> ContainerResult {
        let repo: RepoName = "registry.example/fcos".parse().unwrap();
        let mut r = Report::new(name, &repo, &["stable".into()], dry_run);
        r.outcome = outcome;
        ContainerResult {
            name: name.into(),
            result: Ok(r),
        }
    }

    #[test]
    fn results_are_an_array_in_config_order_each_naming_its_container() {
        // config order, not alphabetical
        let results = [
            report("zeta", Outcome::Pushed, true),
            ContainerResult {
                name: "alpha".into(),
                result: Err(anyhow::anyhow!("no such build")),
            },
            report("mid", Outcome::Skipped, true),
        ];
        let doc = json(&results, true);
        assert_eq!(doc["schema"], crate::report::JSON_SCHEMA);
        assert_eq!(doc["ok"], false, "an errored container fails the release");
        assert_eq!(doc["dry_run"], true);
        assert_eq!(
            doc["containers"],
            serde_json::json!(["zeta", "alpha", "mid"])
        );
        let names: Vec<_> = doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["container"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
        assert_eq!(doc["results"][0]["outcome"], "would-push");
        assert_eq!(doc["results"][1]["outcome"], "error");
        assert_eq!(doc["results"][1]["ok"], false);
        assert_eq!(doc["results"][1]["error"], "no such build");
        assert_eq!(doc["results"][2]["outcome"], "skipped");
    }

    #[test]
    fn a_release_is_ok_when_no_container_failed() {
        let results = [
            report("a", Outcome::UpToDate, false),
            report("b", Outcome::Skipped, false),
        ];
        assert_eq!(json(&results, false)["ok"], true);
        let results = [report("a", Outcome::Failed, false)];
        assert_eq!(json(&results, false)["ok"], false);
    }

    #[test]
    fn a_container_takes_an_artifact_and_key_or_images() {
        let dir = tempfile::tempdir().unwrap();
        let read = |container: &str| {
            let path = dir.path().join("release.toml");
            std::fs::write(
                &path,
                format!(
                    "[trust-keys]\nbuild = \"keys/build.pub\"\n\n[[container]]\nname = \"os\"\n\
                     repo = \"quay.io/fedora/fedora-coreos\"\ntags = [\"stable\"]\n{container}"
                ),
            )
            .unwrap();
            super::ReleaseConfig::read(&path).map_err(|e| format!("{e:#}"))
        };
        let cfg = read("artifact = \"ostree\"\nkey = \"base-oscontainer\"\n").unwrap();
        assert_eq!(cfg.containers[0].artifact.as_deref(), Some("ostree"));
        assert_eq!(
            cfg.trust_keys(),
            [("build".to_string(), dir.path().join("keys/build.pub"))]
        );
        let cfg = read("images = [\"docker://registry.example/staging/os@sha256:0000000000000000000000000000000000000000000000000000000000000000\"]\n").unwrap();
        assert_eq!(cfg.containers[0].images.len(), 1);

        let both = read("artifact = \"ostree\"\nkey = \"k\"\nimages = [\"docker://r.io/a:b\"]\n")
            .unwrap_err();
        assert!(
            both.contains("names images and an artifact or key"),
            "{both}"
        );
        let neither = read("").unwrap_err();
        assert!(neither.contains("has no `artifact`"), "{neither}");
        let no_key = read("artifact = \"ostree\"\n").unwrap_err();
        assert!(no_key.contains("has no `key`"), "{no_key}");
        let bad = read("images = [\"ftp://x\"]\n").unwrap_err();
        assert!(
            bad.contains("container \"os\"") && bad.contains("unknown transport"),
            "{bad}"
        );
    }
}
