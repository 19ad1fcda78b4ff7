//! Registries that lie and answers that never end, from a misbehaving server of
//! the project's own (tests/it/support/liar.rs): pushgate takes digests from bytes,
//! never from headers, bounds what it reads, gives up on a trickle, refuses
//! redirect loops and keeps credentials from other hosts. Whatever happens,
//! nothing is recorded.

use std::path::Path;

use crate::support;
use crate::support::liar::{Liar, Lie};
use crate::support::run::Run;
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";

fn push(repo: &str, wd: &Path, extra: &[&str]) -> Run {
    Run::of(
        support::pushgate()
            .args(["push", "--repo", repo, "--tag", "stable"])
            .args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
            .args([
                "--tls-verify=false",
                "--retry-times",
                "1",
                "--retry-delay",
                "10ms",
            ])
            .arg("--workdir")
            .arg(wd)
            .args(extra),
    )
}

fn workdir() -> tempfile::TempDir {
    let wd = tempfile::tempdir().unwrap();
    write_build(wd.path(), &SampleBuild::small(BUILD, &["x86_64"])).unwrap();
    wd
}

fn meta(wd: &Path) -> Vec<u8> {
    std::fs::read(wd.join(format!("builds/{BUILD}/x86_64/meta.json"))).unwrap()
}

/// Runs a push against `lie`; asserts it failed naming the registry and the
/// request, recorded nothing, and said `needle`.
fn refused(lie: Lie, extra: &[&str], needle: &str) -> Run {
    let liar = Liar::start(lie);
    let wd = workdir();
    let before = meta(wd.path());
    let run = push(&liar.repo("fcos"), wd.path(), extra);
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        run.stderr.contains(liar.addr()) && run.stderr.contains("reading tag stable"),
        "names the registry and the request: {}",
        run.stderr
    );
    assert!(run.stderr.contains(needle), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(meta(wd.path()), before, "nothing recorded");
    run
}

#[test]
fn a_digest_header_that_is_not_the_digest_of_the_bytes_is_refused() {
    refused(Lie::WrongDigestHeader, &[], "but its bytes hash to");
}

#[test]
fn a_100_mib_manifest_is_not_read() {
    refused(
        Lie::Huge,
        &[],
        "104857600 bytes, more than the 4194304 accepted",
    );
}

#[test]
fn an_answer_that_never_ends_is_cut_at_the_bound() {
    refused(Lie::Endless, &[], "more than the 4194304 bytes accepted");
}

#[test]
fn a_trickle_hits_the_deadline_naming_the_request() {
    refused(Lie::Trickle, &["--stall-timeout", "2s"], "stall timeout");
}

#[test]
fn a_redirect_loop_is_an_error() {
    refused(Lie::RedirectLoop, &[], "more than 10 redirects");
}

#[test]
fn a_redirect_to_another_scheme_is_an_error() {
    refused(
        Lie::RedirectTo("ftp://127.0.0.1/manifest".into()),
        &[],
        "a redirect to a ftp URL",
    );
}

#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let elsewhere = Liar::start(Lie::WrongDigestHeader);
    let target = format!("http://{}/v2/fcos/manifests/stable", elsewhere.addr());
    let liar = Liar::start(Lie::BasicThenRedirectTo(target));
    let wd = workdir();
    let dir = wd.path().join("auth");
    std::fs::create_dir(&dir).unwrap();
    let auth = support::write_authfile(&dir, liar.addr(), "user", "s3cret-never-elsewhere");
    let run = push(
        &liar.repo("fcos"),
        wd.path(),
        &["--authfile", auth.to_str().unwrap()],
    );
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        liar.seen().iter().any(|s| s.authorization),
        "the registry itself got the credentials"
    );
    let there = elsewhere.seen();
    assert!(!there.is_empty(), "the redirect was followed");
    assert!(
        there.iter().all(|s| !s.authorization),
        "no credentials went to the other host: {there:?}"
    );
}
