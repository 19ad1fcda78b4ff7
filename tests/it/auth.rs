//! Pushing to an htpasswd-protected registry: credentials come from `--authfile`,
//! `REGISTRY_AUTH_FILE` or `$XDG_RUNTIME_DIR/containers/auth.json`, are matched to the
//! registry by host, and never show up in anything pushgate prints.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{Registry, pushgate, skopeo_inspect_raw, write_authfile};
use base64::Engine as _;
use pushgate_sample::{SampleBuild, write_build};
use serde_json::Value;

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-Pa55word-4-pushgate";
const BUILD: &str = "41.20261127.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

struct Case {
    tmp: tempfile::TempDir,
    workdir: PathBuf,
    registry: Registry,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().expect("temp dir");
        let workdir = tmp.path().join("work");
        fs::create_dir(&workdir).expect("create workdir");
        write_build(&workdir, &SampleBuild::small(BUILD, &ARCHES)).expect("write sample build");
        Case {
            tmp,
            workdir,
            registry: Registry::start_with_htpasswd(USER, PASSWORD),
        }
    }

    /// A fresh directory under the temp dir.
    fn dir(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join(name);
        fs::create_dir_all(&d).expect("create dir");
        d
    }

    /// An auth file with the right credentials for this registry.
    fn good_authfile(&self) -> PathBuf {
        write_authfile(&self.dir("auth-good"), self.registry.addr(), USER, PASSWORD)
    }

    fn meta_path(&self, arch: &str) -> PathBuf {
        self.workdir
            .join("builds")
            .join(BUILD)
            .join(arch)
            .join("meta.json")
    }

    fn metas(&self) -> Vec<Vec<u8>> {
        ARCHES
            .iter()
            .map(|a| fs::read(self.meta_path(a)).expect("read meta.json"))
            .collect()
    }

    /// `pushgate push ... --json` of artifact ostree; `customize` adds flags and env.
    fn push(&self, customize: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = pushgate();
        cmd.args(["push", "--repo"])
            .arg(self.registry.repo("fcos"))
            .args([
                "--tag",
                "stable",
                "--artifact",
                "ostree",
                "--metajsonname",
                "base-oscontainer",
                "--tls-verify=false",
                "--json",
                "--workdir",
            ])
            .arg(&self.workdir);
        customize(&mut cmd);
        cmd.output().expect("run pushgate")
    }

    fn skopeo_list(&self, authfile: &Path) -> Value {
        let raw = skopeo_inspect_raw(
            &format!("{}:stable", self.registry.repo("fcos")),
            Some(authfile),
        )
        .unwrap_or_else(|e| panic!("skopeo inspect: {e}"));
        serde_json::from_slice(&raw).expect("manifest list JSON")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Neither the password nor the base64 `auth` value appears in stdout or stderr.
fn assert_no_secret(out: &Output) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let s = text(stream);
        assert!(!s.contains(PASSWORD), "{name} shows the password:\n{s}");
        assert!(
            !s.contains(&encoded),
            "{name} shows the encoded credentials:\n{s}"
        );
    }
}

/// The run succeeded with `outcome`; returns the JSON report.
fn assert_success(out: &Output, outcome: &str) -> Value {
    assert_no_secret(out);
    assert!(
        out.status.success(),
        "pushgate failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("--json output is not JSON ({e}):\n{}", text(&out.stdout)));
    crate::support::run::assert_schema(&report, &text(&out.stdout));
    assert_eq!(report["outcome"], outcome, "{report}");
    report
}

/// The pushed list holds the digests the report names, for every arch.
fn assert_list_matches(list: &Value, report: &Value) {
    let digests: Vec<&str> = list["manifests"]
        .as_array()
        .expect("a manifest list")
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    for arch in ARCHES {
        let d = report["digests"][arch].as_str().expect("digest per arch");
        assert!(digests.contains(&d), "{arch} {d} not in {list}");
    }
}

/// The run failed with exit 1 on a 401 that names the registry; nothing was written.
fn assert_refused_401(case: &Case, out: &Output, metas_before: &[Vec<u8>]) -> String {
    assert_no_secret(out);
    let stderr = text(&out.stderr);
    // shown with --nocapture, and on failure
    eprintln!("pushgate stderr: {stderr}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{stderr}",
        text(&out.stdout)
    );
    assert!(stderr.contains(case.registry.addr()), "{stderr}");
    assert!(
        stderr.contains("401") || stderr.to_lowercase().contains("credentials"),
        "{stderr}"
    );
    let ok_writes: Vec<_> = case
        .registry
        .writes()
        .into_iter()
        .filter(|w| w.status < 400)
        .collect();
    assert!(ok_writes.is_empty(), "{ok_writes:?}");
    assert_eq!(case.metas(), metas_before, "meta.json changed");
    stderr
}

#[test]
fn authfile_flag_pushes_and_rerun_is_a_noop() {
    let c = Case::new();
    let authfile = c.good_authfile();
    let out = c.push(|cmd| {
        cmd.arg("--authfile").arg(&authfile);
    });
    let report = assert_success(&out, "pushed");
    assert_list_matches(&c.skopeo_list(&authfile), &report);
    for arch in ARCHES {
        let meta: Value = serde_json::from_slice(&fs::read(c.meta_path(arch)).unwrap()).unwrap();
        assert_eq!(
            meta["base-oscontainer"]["digest"], report["digests"][arch],
            "{arch}"
        );
    }

    // rerun: nothing to do, nothing written
    let metas = c.metas();
    let writes_before = c.registry.writes().len();
    let out = c.push(|cmd| {
        cmd.arg("--authfile").arg(&authfile);
    });
    assert_success(&out, "up-to-date");
    let writes = c.registry.writes();
    assert_eq!(
        writes.len(),
        writes_before,
        "the no-op rerun wrote: {:?}",
        &writes[writes_before..]
    );
    assert_eq!(c.metas(), metas, "meta.json changed on a no-op rerun");
}

#[test]
fn registry_auth_file_env_is_used() {
    let c = Case::new();
    let authfile = c.good_authfile();
    let out = c.push(|cmd| {
        cmd.env("REGISTRY_AUTH_FILE", &authfile);
    });
    let report = assert_success(&out, "pushed");
    assert_list_matches(&c.skopeo_list(&authfile), &report);
}

#[test]
fn xdg_runtime_dir_auth_json_is_used() {
    let c = Case::new();
    let runtime = c.dir("runtime");
    let containers = runtime.join("containers");
    fs::create_dir_all(&containers).unwrap();
    let authfile = write_authfile(&containers, c.registry.addr(), USER, PASSWORD);
    assert_eq!(authfile, containers.join("auth.json"));
    let out = c.push(|cmd| {
        cmd.env("XDG_RUNTIME_DIR", &runtime);
    });
    let report = assert_success(&out, "pushed");
    assert_list_matches(&c.skopeo_list(&authfile), &report);
}

#[test]
fn wrong_password_is_refused_without_showing_secrets() {
    let c = Case::new();
    let bad = write_authfile(
        &c.dir("auth-bad"),
        c.registry.addr(),
        USER,
        "not-the-password",
    );
    let metas = c.metas();
    let out = c.push(|cmd| {
        cmd.arg("--authfile").arg(&bad);
    });
    let stderr = assert_refused_401(&c, &out, &metas);
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:not-the-password"));
    assert!(!stderr.contains(&encoded), "{stderr}");
    assert!(!text(&out.stdout).contains("not-the-password"));
}

#[test]
fn no_credentials_is_refused_clearly() {
    let c = Case::new();
    let metas = c.metas();
    let out = c.push(|_| {});
    let stderr = assert_refused_401(&c, &out, &metas);
    assert_says_anonymous(&stderr);
}

/// No credentials were sent: the error must say so, not that credentials were refused.
fn assert_says_anonymous(stderr: &str) {
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("no credentials") || lower.contains("anonymous"),
        "the error should say that no credentials were found for the registry:\n{stderr}"
    );
    assert!(
        !lower.contains("refused the credentials"),
        "no credentials were sent, yet the error says they were refused:\n{stderr}"
    );
}

#[test]
fn credentials_for_another_host_are_not_used() {
    let c = Case::new();
    // The right user and password, but filed under other hosts: the same port on
    // another name, and the same host on another port.
    let port: u16 = c
        .registry
        .addr()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let other_port = if port == u16::MAX { port - 1 } else { port + 1 };
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let doc = serde_json::json!({ "auths": {
        format!("localhost:{port}"): { "auth": encoded },
        format!("127.0.0.1:{other_port}"): { "auth": encoded },
        "127.0.0.1": { "auth": encoded },
    }});
    let authfile = c.dir("auth-other").join("auth.json");
    fs::write(&authfile, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let metas = c.metas();
    let out = c.push(|cmd| {
        cmd.arg("--authfile").arg(&authfile);
    });
    let stderr = assert_refused_401(&c, &out, &metas);
    assert_says_anonymous(&stderr);
}
