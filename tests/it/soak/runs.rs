//! The build every run of the soak copies and what a clean push of it leaves,
//! running pushgate, and the state a run must end in (see the module above).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{ARCHES, BUILD_ID, KEY, META_STAMP, POLL, REPO, RUN_TIMEOUT, Settings, TAGS};
use crate::support::proxy::{Faults, Proxy};
use crate::support::run::schema_errors;
use crate::support::{Registry, Request, pushgate, skopeo, skopeo_inspect_raw};
use pushgate_sample::{SampleBuild, write_build};
use serde_json::Value;
use tempfile::TempDir;

/// A generated workdir every run copies, and the state a clean push of it ends in.
pub(super) struct Reference {
    pub(super) template: TempDir,
    /// Every file of the template, relative to it.
    pub(super) files: BTreeSet<PathBuf>,
    /// The list every tag serves after a clean push.
    pub(super) list: Vec<u8>,
    /// arch → meta.json after a clean push, normalised ([`normalise`]).
    pub(super) meta: BTreeMap<String, String>,
    /// Requests a clean push sends (through a proxy without faults).
    pub(super) requests: u64,
    /// Blobs a clean push uploads.
    pub(super) blobs: usize,
    /// The tag a clean push puts last.
    pub(super) last_tag: String,
    /// `--chunk-size` of every push, in KiB.
    pub(super) chunk_kib: Option<u64>,
}

impl Reference {
    pub(super) fn new(settings: &Settings) -> Reference {
        let template = tempfile::Builder::new()
            .prefix("pushgate-soak-build-")
            .tempdir()
            .expect("create the template workdir");
        let build =
            SampleBuild::ostree(BUILD_ID, &ARCHES, settings.layers, settings.layer_kib << 10);
        write_build(template.path(), &build).expect("write the sample build");
        let files = files_under(template.path());

        let registry = Registry::start();
        let proxy = Proxy::start(registry.addr(), Faults::none());
        let wd = TempDir::new().expect("clean push workdir");
        copy_workdir(template.path(), wd.path());
        let repo = proxy.repo(REPO);
        let mut clean = push(&repo, wd.path());
        if let Some(kib) = settings.chunk_kib {
            clean.arg(format!("--chunk-size={kib}k"));
        }
        let clean = Attempt::run(&mut clean);
        assert_eq!(clean.outcome(), "pushed", "clean push: {}", clean.context());
        let log = proxy.log();
        let requests = log.len() as u64;
        let last_tag = log
            .iter()
            .rev()
            .filter(|e| e.method == "PUT")
            .find_map(|e| {
                e.path()
                    .rsplit_once("/manifests/")
                    .map(|(_, t)| t.to_string())
            })
            .filter(|t| TAGS.contains(&t.as_str()))
            .expect("the clean push put its tags last");
        let list = skopeo_inspect_raw(&format!("{repo}:{}", TAGS[0]), None)
            .expect("the clean push's list");
        let meta = ARCHES
            .iter()
            .map(|a| {
                let text = fs::read_to_string(meta_path(wd.path(), a)).expect("meta.json");
                (a.to_string(), normalise(&text, &repo))
            })
            .collect();
        Reference {
            template,
            files,
            list,
            meta,
            requests,
            last_tag,
            chunk_kib: settings.chunk_kib,
            blobs: Puts::of(&registry.requests()).blobs.len(),
        }
    }

    /// A push of the build in `wd` to `repo`, as every run of the soak makes it.
    pub(super) fn push(&self, repo: &str, wd: &Path) -> Command {
        let mut cmd = push(repo, wd);
        if let Some(kib) = self.chunk_kib {
            cmd.arg(format!("--chunk-size={kib}k"));
        }
        cmd
    }

    /// A fresh copy of the build, as no push has touched it.
    pub(super) fn workdir(&self) -> TempDir {
        let wd = tempfile::Builder::new()
            .prefix("pushgate-soak-wd-")
            .tempdir()
            .expect("create a workdir");
        copy_workdir(self.template.path(), wd.path());
        wd
    }
}

/// meta.json text with the repository pushed to (it names the proxy's port) and
/// cosa's meta-stamp (the time of the write) replaced by placeholders.
pub(super) fn normalise(text: &str, repo: &str) -> String {
    text.replace(repo, "REPO")
        .lines()
        .map(
            |line| match line.split_once(&format!("\"{META_STAMP}\":")) {
                Some((indent, _)) => format!("{indent}\"{META_STAMP}\": STAMP"),
                None => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn meta_path(wd: &Path, arch: &str) -> PathBuf {
    wd.join("builds")
        .join(BUILD_ID)
        .join(arch)
        .join("meta.json")
}

/// Copies a cosa workdir: the archives hard-linked (nothing writes them), the rest copied.
pub(super) fn copy_workdir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the workdir copy");
    for entry in fs::read_dir(from).expect("read the template") {
        let entry = entry.expect("template entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            copy_workdir(&src, &dst);
        } else if src.extension().is_some_and(|e| e == "ociarchive") {
            fs::hard_link(&src, &dst).expect("link an archive");
        } else {
            fs::copy(&src, &dst).expect("copy a file");
        }
    }
}

/// Every file and directory under `root`, relative to it.
pub(super) fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)
            .expect("read a workdir directory")
            .flatten()
        {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path.clone());
            }
            found.insert(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    found
}

// ---------------------------------------------------------------------------------
// Running pushgate
// ---------------------------------------------------------------------------------

pub(super) fn push(repo: &str, wd: &Path) -> Command {
    let mut cmd = pushgate();
    cmd.args(["push", "--repo", repo]);
    for tag in TAGS {
        cmd.args(["--tag", tag]);
    }
    cmd.args(["--artifact", "ostree", "--metajsonname", KEY, "--workdir"])
        .arg(wd)
        .args(["--tls-verify=false", "--json", "--retry-delay", "20ms"])
        .stdin(Stdio::null());
    cmd
}

/// One pushgate run that ended (on its own or killed).
pub(super) struct Attempt {
    pub(super) code: Option<i32>,
    pub(super) killed: bool,
    pub(super) json: Value,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Attempt {
    /// Runs `cmd` to its end.
    pub(super) fn run(cmd: &mut Command) -> Attempt {
        Attempt::wait(Running::spawn(cmd), false)
    }

    pub(super) fn wait(mut running: Running, kill: bool) -> Attempt {
        if kill {
            running.child.kill().expect("SIGKILL pushgate");
        }
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = running.child.try_wait().expect("poll pushgate") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = running.child.kill();
                let _ = running.child.wait();
                panic!("pushgate did not end within {RUN_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        };
        let read =
            |name: &str| fs::read_to_string(running.out.path().join(name)).unwrap_or_default();
        let stdout = read("stdout");
        Attempt {
            code: status.code(),
            killed: status.signal() == Some(9),
            json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
            stdout,
            stderr: read("stderr"),
        }
    }

    pub(super) fn outcome(&self) -> &str {
        self.json["outcome"].as_str().unwrap_or_default()
    }

    pub(super) fn succeeded(&self) -> bool {
        self.code == Some(0) && self.json["ok"] == true
    }

    pub(super) fn retries(&self) -> u64 {
        self.json["retries"].as_u64().unwrap_or(0)
    }

    /// What is wrong with how it ended: killed runs aside, pushgate exits 0 with a
    /// report or 1 with a failure object, either as the schema says.
    pub(super) fn unclean(&self) -> Option<String> {
        if self.killed {
            return None;
        }
        let clean = match self.code {
            Some(0) => self.json["ok"] == true,
            Some(1) => self.json["ok"] == false && self.json["error"].is_string(),
            _ => false,
        };
        let schema = if self.json.is_object() {
            schema_errors(&self.json)
        } else {
            vec!["stdout is not one JSON object".to_string()]
        };
        (!clean || !schema.is_empty())
            .then(|| format!("an unclean end ({}): {}", schema.join("; "), self.context()))
    }

    pub(super) fn context(&self) -> String {
        format!(
            "exit {:?}{}\nstdout: {}\nstderr: {}",
            self.code,
            if self.killed { " (killed)" } else { "" },
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// A pushgate started, its output going to files.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) out: TempDir,
}

impl Running {
    pub(super) fn spawn(cmd: &mut Command) -> Running {
        let out = TempDir::new().expect("output dir");
        let file = |name: &str| File::create(out.path().join(name)).expect("output file");
        let child = cmd
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn pushgate");
        Running { child, out }
    }
}

// ---------------------------------------------------------------------------------
// What a run must end in
// ---------------------------------------------------------------------------------

/// The registry's successful PUTs of one repository, by what they wrote.
#[derive(Default)]
pub(super) struct Puts {
    pub(super) blobs: BTreeMap<String, usize>,
    pub(super) manifests: BTreeMap<String, usize>,
    pub(super) tags: BTreeMap<String, usize>,
}

impl Puts {
    pub(super) fn of(requests: &[Request]) -> Puts {
        let mut puts = Puts::default();
        let prefix = format!("/v2/{REPO}/");
        for r in requests {
            if r.method != "PUT" || !(200..300).contains(&r.status) {
                continue;
            }
            let Some(rest) = r.path.strip_prefix(&prefix) else {
                continue;
            };
            if rest.starts_with("blobs/uploads/") {
                let digest = r
                    .query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("digest="))
                    .unwrap_or_default()
                    .replace("%3A", ":")
                    .replace("%3a", ":");
                *puts.blobs.entry(digest).or_default() += 1;
            } else if let Some(reference) = rest.strip_prefix("manifests/") {
                let into = if reference.contains(':') {
                    &mut puts.manifests
                } else {
                    &mut puts.tags
                };
                *into.entry(reference.to_string()).or_default() += 1;
            }
        }
        puts
    }

    /// What was PUT successfully more than once.
    pub(super) fn twice(&self) -> Vec<String> {
        [
            ("blob", &self.blobs),
            ("manifest", &self.manifests),
            ("tag", &self.tags),
        ]
        .into_iter()
        .flat_map(|(what, counts)| {
            counts
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(move |(id, n)| format!("{what} {id} PUT {n} times"))
        })
        .collect()
    }
}

/// Checks the state a converged run left; returns what is wrong, one line each.
/// `converged` is the last (successful) run; `noop` runs once more and checks it
/// wrote nothing and changed nothing.
pub(super) fn check_end_state(
    reference: &Reference,
    registry: &Registry,
    repo: &str,
    wd: &Path,
) -> Vec<String> {
    let mut wrong = Vec::new();
    // A true no-op: up-to-date, no registry write, meta.json untouched.
    let metas = |wd: &Path| -> Vec<Vec<u8>> {
        ARCHES
            .iter()
            .map(|a| fs::read(meta_path(wd, a)).unwrap_or_default())
            .collect()
    };
    let before = metas(wd);
    let seen = registry.requests().len();
    let noop = Attempt::run(&mut reference.push(repo, wd));
    let writes: Vec<String> = registry.requests()[seen..]
        .iter()
        .filter(|r| r.is_write())
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    if noop.outcome() != "up-to-date" || !writes.is_empty() || metas(wd) != before {
        wrong.push(format!(
            "the run after convergence was no no-op (writes {writes:?}, meta.json {}): {}",
            if metas(wd) == before {
                "untouched"
            } else {
                "rewritten"
            },
            noop.context()
        ));
    }
    // Every tag serves the list a clean push serves, read by skopeo.
    for tag in TAGS {
        match skopeo_inspect_raw(&format!("{}:{tag}", registry.repo(REPO)), None) {
            Ok(list) if list == reference.list => {}
            Ok(list) => wrong.push(format!(
                "tag {tag} serves another list: {}",
                String::from_utf8_lossy(&list)
            )),
            Err(e) => wrong.push(format!("tag {tag} cannot be read: {e}")),
        }
    }
    // Everything the list names is there and whole: skopeo checks every digest.
    let back = TempDir::new().expect("pull-back dir");
    let out = skopeo()
        .args(["copy", "--quiet", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{}:{}", registry.repo(REPO), TAGS[0]))
        .arg(format!("oci:{}", back.path().join("image").display()))
        .output()
        .expect("run skopeo copy");
    if !out.status.success() {
        wrong.push(format!(
            "skopeo cannot pull the image back: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // meta.json: the clean push's, and Python reads it.
    for arch in ARCHES {
        let path = meta_path(wd, arch);
        let text = fs::read_to_string(&path).unwrap_or_default();
        if normalise(&text, repo) != reference.meta[arch] {
            wrong.push(format!(
                "{} is not what a clean push writes:\n{text}",
                path.display()
            ));
        }
    }
    let python = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfor p in sys.argv[1:]:\n    json.load(open(p))",
        ])
        .args(ARCHES.iter().map(|a| meta_path(wd, a)))
        .output()
        .expect("run python3");
    if !python.status.success() {
        wrong.push(format!(
            "Python's json cannot read a meta.json: {}",
            String::from_utf8_lossy(&python.stderr).trim()
        ));
    }
    // Nothing left that the build did not have: no lock, claim, owner or temp file.
    let left: Vec<_> = files_under(wd)
        .difference(&reference.files)
        .map(|p| p.display().to_string())
        .collect();
    if !left.is_empty() {
        wrong.push(format!("files left in the workdir: {left:?}"));
    }
    wrong
}
