//! Registries that lie and answers that never end, from a misbehaving server of
//! the project's own (tests/it/support/liar.rs): pushgate takes digests from bytes,
//! never from headers, bounds what it reads, gives up on a trickle, refuses
//! redirect loops and keeps credentials from other hosts. Whatever happens,
//! nothing is recorded.
//!
//! Issue 27, against the servers of tests/it/support/hostile.rs: a registry's
//! credentials belong to its origin (scheme, host, port). An upload `Location`
//! or a redirect to another origin gets none, over http and over https, and
//! https never turns into http; another origin answering 401 with a realm of
//! its own is not handed the password. A token server may claim any
//! `expires_in`, u64::MAX and beyond: no panic. Each run ends with its exit
//! status (never 101), one JSON object on stdout and its line in the decision log.

use std::path::Path;

use crate::support;
use crate::support::hostile::{Hostile, Role, Seen};
use crate::support::liar::{Liar, Lie};
use crate::support::run::Run;
use crate::support::tls::{ClientCert, TestPki};
use crate::support::token::TokenServer;
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

/// The password the hostile registries are given, looked for everywhere else.
const PASSWORD: &str = "s3cret-of-the-registry";

/// A push to `registry` (over TLS with `pki`'s CA trusted when given) with
/// its credentials, `--json` and a decision log; asserts the run failed
/// cleanly (exit 1, no panic), that stdout holds its failed JSON object and
/// the log its line, and that the registry itself got the credentials.
/// Returns stderr.
fn push_with_credentials(registry: &Hostile, pki: Option<&TestPki>) -> String {
    let wd = workdir();
    let dir = wd.path().join("auth");
    std::fs::create_dir(&dir).unwrap();
    let auth = support::write_authfile(&dir, registry.addr(), "user", PASSWORD);
    let log = wd.path().join("decisions.jsonl");
    let mut args = vec![
        "--authfile".to_string(),
        auth.display().to_string(),
        "--json".into(),
        "--decision-log".into(),
        log.display().to_string(),
    ];
    match pki {
        Some(pki) => {
            args.push("--cert-dir".into());
            args.push(pki.cert_dir(ClientCert::Omit).display().to_string());
        }
        // Plain HTTP as pushgate finds it: TLS first, then the fallback.
        None => args.push("--tls-verify=false".into()),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = Run::of(
        support::pushgate()
            .args(["push", "--repo", &registry.repo("fcos"), "--tag", "stable"])
            .args(["--artifact", "ostree", "--metajsonname", "base-oscontainer"])
            .args(["--retry-times", "1", "--retry-delay", "10ms"])
            .arg("--workdir")
            .arg(wd.path())
            .args(&args),
    );
    assert_eq!(run.code, 1, "a clean failure, no panic: {}", run.context());
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.json["ok"], false, "{}", run.context());
    assert!(
        run.json.to_string().contains(registry.addr()),
        "the JSON object names the registry: {}",
        run.context()
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "one line for the run: {lines}");
    assert_eq!(entries[0]["repo"], registry.repo("fcos"), "{lines}");
    assert!(
        matches!(entries[0]["outcome"].as_str(), Some("error" | "failed")),
        "{lines}"
    );
    assert!(
        registry.seen().iter().any(|s| s.authorization),
        "the registry itself got the credentials: {:?}",
        registry.seen()
    );
    run.stderr
}

/// Asserts `attacker` was reached (when `reached`) and never got any
/// credentials, nor a request for a token with them.
fn nothing_for(attacker: &Hostile, reached: bool) -> Vec<Seen> {
    let seen = attacker.seen();
    assert_eq!(
        !seen.is_empty(),
        reached,
        "reached the other origin: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| !s.authorization),
        "credentials went to another origin: {seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.path != "/token"),
        "the other origin's realm was asked for a token: {seen:?}"
    );
    seen
}

#[test]
fn an_upload_location_on_another_origin_gets_no_credentials_over_http() {
    let attacker = Hostile::start(Role::Attacker, None);
    let registry = Hostile::start(Role::UploadTo(attacker.url("/upload/1")), None);
    let stderr = push_with_credentials(&registry, None);
    let seen = nothing_for(&attacker, true);
    assert!(
        seen.iter()
            .any(|s| s.path == "/upload/1" && matches!(s.method.as_str(), "PUT" | "PATCH")),
        "the upload went on at the Location: {seen:?}"
    );
    assert!(
        stderr.contains(&attacker.url("")) && stderr.contains("not registry"),
        "says the other origin asked for credentials it was not given: {stderr}"
    );
}

#[test]
fn an_upload_location_on_another_origin_gets_no_credentials_over_https() {
    let pki = TestPki::new();
    let attacker = Hostile::start(Role::Attacker, Some(&pki));
    let registry = Hostile::start(Role::UploadTo(attacker.url("/upload/1")), Some(&pki));
    let stderr = push_with_credentials(&registry, Some(&pki));
    let seen = nothing_for(&attacker, true);
    assert!(
        seen.iter()
            .any(|s| s.path == "/upload/1" && matches!(s.method.as_str(), "PUT" | "PATCH")),
        "the upload went on at the Location: {seen:?}"
    );
    assert!(
        stderr.contains(&attacker.url("")) && stderr.contains("not registry"),
        "{stderr}"
    );
}

#[test]
fn an_upload_location_from_https_down_to_http_is_refused_naming_the_registry() {
    let pki = TestPki::new();
    let attacker = Hostile::start(Role::Attacker, None);
    let registry = Hostile::start(Role::UploadTo(attacker.url("/upload/1")), Some(&pki));
    let stderr = push_with_credentials(&registry, Some(&pki));
    nothing_for(&attacker, false);
    assert!(
        stderr.contains(&format!("registry {}", registry.addr()))
            && stderr.contains("from https to plain http"),
        "{stderr}"
    );
}

/// A registry redirecting its manifest reads to an origin whose 401 names a
/// realm of its own: followed, but the attacker's realm gets nothing.
fn reads_redirected_to_an_attackers_realm(pki: Option<&TestPki>) {
    let attacker = Hostile::start(Role::Attacker, pki);
    let target = attacker.url("/v2/fcos/manifests/stable");
    let registry = Hostile::start(Role::RedirectReadsTo(target), pki);
    let stderr = push_with_credentials(&registry, pki);
    let seen = nothing_for(&attacker, true);
    assert!(
        seen.iter().any(|s| s.path == "/v2/fcos/manifests/stable"),
        "the redirect was followed: {seen:?}"
    );
    assert!(
        stderr.contains(&attacker.url(""))
            && stderr.contains(&format!("not registry {}", registry.addr()))
            && stderr.contains("none were sent"),
        "says what happened: {stderr}"
    );
}

#[test]
fn a_redirect_to_an_origin_with_its_own_realm_gets_no_credentials_over_http() {
    reads_redirected_to_an_attackers_realm(None);
}

#[test]
fn a_redirect_to_an_origin_with_its_own_realm_gets_no_credentials_over_https() {
    reads_redirected_to_an_attackers_realm(Some(&TestPki::new()));
}

#[test]
fn a_redirect_from_https_down_to_http_is_refused_naming_the_registry() {
    let pki = TestPki::new();
    let attacker = Hostile::start(Role::Attacker, None);
    let target = attacker.url("/v2/fcos/manifests/stable");
    let registry = Hostile::start(Role::RedirectReadsTo(target), Some(&pki));
    let stderr = push_with_credentials(&registry, Some(&pki));
    nothing_for(&attacker, false);
    assert!(
        stderr.contains(&format!("registry {}", registry.addr()))
            && stderr.contains("from https to plain http"),
        "{stderr}"
    );
}

#[test]
fn a_token_said_to_live_u64_max_seconds_is_clamped_and_the_push_works() {
    let tokens = TokenServer::builder()
        .user("pusher", PASSWORD)
        .grant("pusher", "fcos*", &["pull", "push"])
        .expires_in(u64::MAX)
        .start();
    let registry = support::Registry::start_with_token(&tokens);
    let wd = workdir();
    let dir = wd.path().join("auth");
    std::fs::create_dir(&dir).unwrap();
    let auth = support::write_authfile(&dir, registry.addr(), "pusher", PASSWORD);
    let log = wd.path().join("decisions.jsonl");
    let run = push(
        &registry.repo("fcos"),
        wd.path(),
        &[
            "--authfile",
            auth.to_str().unwrap(),
            "--json",
            "--decision-log",
            log.to_str().unwrap(),
        ],
    );
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    let entry: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    assert_eq!(entry["outcome"], "pushed", "{lines}");
    // Clamped to a day, not wrapped to nothing: the tokens are reused (one per
    // action set), not fetched again for every request.
    let fetched = tokens.token_requests();
    assert!(
        (1..=2).contains(&fetched.len()) && fetched.iter().all(|r| r.status == 200),
        "{fetched:?}"
    );
}

#[test]
fn no_expires_in_a_token_server_says_makes_pushgate_panic() {
    for (expires_in, token_refused) in [
        ("18446744073709551615", false),
        ("18446744073709551616", true),
        ("1e999", true),
        ("-1", true),
        ("\"forever\"", true),
    ] {
        let body = format!(r#"{{"token":"t0ken","expires_in":{expires_in}}}"#);
        let registry = Hostile::start(Role::TokenAnswer(body), None);
        let stderr = push_with_credentials(&registry, None);
        let seen = registry.seen();
        assert!(
            seen.iter().any(|s| s.path == "/token" && s.authorization),
            "{expires_in}: the token was asked for with the credentials: {seen:?}"
        );
        let realm = format!("token server {}", registry.url("/token"));
        assert_eq!(
            stderr.contains(&realm) && stderr.contains("not a token"),
            token_refused,
            "{expires_in}: {stderr}"
        );
        if !token_refused {
            assert!(
                seen.iter()
                    .any(|s| s.path.starts_with("/v2/fcos/") && s.authorization),
                "{expires_in}: the token was used: {seen:?}"
            );
        }
    }
}
