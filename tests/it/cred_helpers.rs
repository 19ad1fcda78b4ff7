//! Credential helpers, as CI machines keep credentials: `credHelpers` (per
//! registry) and `credsStore` (default) in the auth file run
//! `docker-credential-NAME get` with the registry on stdin, as docker and
//! podman do. The helpers here are scripts the tests write.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support;
use crate::support::Registry;
use crate::support::run::Run;
use pushgate_sample::{SampleBuild, write_build};

const USER: &str = "builder";
const PASSWORD: &str = "h3lper-kept-s3cret";
const BUILD: &str = "41.20261127.1.0";

/// Writes `docker-credential-NAME` into `dir`: it logs what it was asked on
/// stdin to `dir/NAME.asked` and answers with `body` (exit `code`).
fn helper(dir: &Path, name: &str, body: &str, code: i32) {
    let path = dir.join(format!("docker-credential-{name}"));
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\ncat > '{}/{name}.asked'\nprintf '%s' '{body}'\nexit {code}\n",
        dir.display()
    );
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn push(registry: &Registry, wd: &Path, authfile: &Path, bin: &Path) -> Run {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Run::of(
        support::pushgate()
            .args(["push", "--repo", &registry.repo("fcos"), "--tag", "stable"])
            .args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
            .args(["--tls-verify=false", "--json"])
            .arg("--workdir")
            .arg(wd)
            .arg("--authfile")
            .arg(authfile)
            .env("PATH", path),
    )
}

fn setup() -> (Registry, tempfile::TempDir, PathBuf) {
    let registry = Registry::start_with_htpasswd(USER, PASSWORD);
    let wd = tempfile::tempdir().unwrap();
    write_build(wd.path(), &SampleBuild::small(BUILD, &["x86_64"])).unwrap();
    let bin = wd.path().join("bin");
    fs::create_dir(&bin).unwrap();
    (registry, wd, bin)
}

fn authfile(wd: &Path, doc: serde_json::Value) -> PathBuf {
    let p = wd.join("auth.json");
    fs::write(&p, serde_json::to_vec(&doc).unwrap()).unwrap();
    p
}

#[test]
fn a_cred_helper_for_the_registry_gives_the_credentials() {
    let (registry, wd, bin) = setup();
    let answer = format!(
        r#"{{"ServerURL":"{}","Username":"{USER}","Secret":"{PASSWORD}"}}"#,
        registry.addr()
    );
    helper(&bin, "pgtest", &answer, 0);
    let auth = authfile(
        wd.path(),
        serde_json::json!({ "credHelpers": { registry.addr(): "pgtest" } }),
    );
    let run = push(&registry, wd.path(), &auth, &bin);
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert_eq!(
        fs::read_to_string(bin.join("pgtest.asked")).unwrap(),
        registry.addr(),
        "the helper was asked for this registry on stdin"
    );
    assert!(!run.stderr.contains(PASSWORD));
}

#[test]
fn creds_store_is_the_default_and_auths_answer_what_it_does_not_know() {
    let (registry, wd, bin) = setup();
    helper(&bin, "store", "credentials not found in native keychain", 1);
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    };
    let auth = authfile(
        wd.path(),
        serde_json::json!({
            "credsStore": "store",
            "auths": { registry.addr(): { "auth": encoded } },
        }),
    );
    let run = push(&registry, wd.path(), &auth, &bin);
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert!(
        bin.join("store.asked").exists(),
        "the store was asked first"
    );
}

#[test]
fn a_missing_or_failing_helper_is_an_error_naming_it() {
    let (registry, wd, bin) = setup();
    let auth = authfile(
        wd.path(),
        serde_json::json!({ "credHelpers": { registry.addr(): "absent" } }),
    );
    let run = push(&registry, wd.path(), &auth, &bin);
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        run.stderr.contains("docker-credential-absent"),
        "{}",
        run.stderr
    );
    helper(&bin, "broken", "keychain locked", 2);
    let auth = authfile(
        wd.path(),
        serde_json::json!({ "credHelpers": { registry.addr(): "broken" } }),
    );
    let run = push(&registry, wd.path(), &auth, &bin);
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        run.stderr.contains("docker-credential-broken"),
        "{}",
        run.stderr
    );
    // What a failing helper printed may be a secret: it reaches neither the
    // error, nor the JSON report.
    assert!(!run.stderr.contains("keychain locked"), "{}", run.stderr);
    assert!(!run.stdout.contains("keychain locked"), "{}", run.stdout);
    assert!(registry.writes().is_empty(), "nothing written");
}
