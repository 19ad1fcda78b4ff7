//! pushgate against registries as quay.io, ghcr.io and in-house ones run them:
//! Docker token auth (docker-registry with `auth: token` and the project's own
//! token server, per-user grants) and HTTPS with a private CA, mutual TLS
//! included. skopeo, with its own credentials and CA, checks what landed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support;
use crate::support::proxy::{Action, Faults, Proxy, Rule};
use crate::support::run::Run;
use crate::support::tls::{ClientCert, TestPki};
use crate::support::token::TokenServer;
use crate::support::{Registry, pushgate, sha256_digest, skopeo_inspect_raw, write_authfile};
use pushgate_sample::{SampleBuild, write_build};

const BUILD: &str = "41.20261127.1.0";
const PASSWORD: &str = "pUsh-s3cret-0f-the-test";

fn tokens(lifetime: Duration) -> TokenServer {
    TokenServer::builder()
        .user("pusher", PASSWORD)
        .user("reader", PASSWORD)
        .grant("pusher", "fcos*", &["pull", "push"])
        .grant("reader", "fcos*", &["pull"])
        .lifetime(lifetime)
        .strict_expiry()
        .start()
}

fn workdir() -> tempfile::TempDir {
    let wd = tempfile::tempdir().unwrap();
    write_build(
        wd.path(),
        &SampleBuild::small(BUILD, &["x86_64", "aarch64"]),
    )
    .unwrap();
    wd
}

fn push(repo: &str, wd: &Path, extra: &[&str]) -> Command {
    let mut cmd = pushgate();
    cmd.args([
        "push",
        "--repo",
        repo,
        "--tag",
        "stable",
        "--artifact",
        "ostree",
        "--metajsonname",
        "base-oscontainer",
        "--json",
    ])
    .arg("--workdir")
    .arg(wd)
    .args(extra);
    cmd
}

fn authfile(wd: &Path, registry: &str, user: &str, password: &str) -> PathBuf {
    let dir = wd.join(format!("auth-{user}"));
    std::fs::create_dir_all(&dir).unwrap();
    write_authfile(&dir, registry, user, password)
}

/// The list `repo:stable` serves, read by skopeo with `authfile`.
fn served(repo: &str, authfile: &Path) -> String {
    let raw = skopeo_inspect_raw(&format!("{repo}:stable"), Some(authfile))
        .unwrap_or_else(|e| panic!("skopeo: {e}"));
    sha256_digest(&raw)
}

/// The digest of what `reference` serves, read by skopeo over verified TLS with
/// the CA (and client certificate) of `cert_dir`.
fn skopeo_with_certs(reference: &str, cert_dir: &Path) -> String {
    let out = support::skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(cert_dir)
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sha256_digest(&out.stdout)
}

#[test]
fn token_auth_push_and_noop_rerun_reuse_tokens() {
    let t = tokens(Duration::from_secs(300));
    let registry = Registry::start_with_token(&t);
    let wd = workdir();
    let auth = authfile(wd.path(), registry.addr(), "pusher", PASSWORD);
    let auth_arg = auth.to_str().unwrap();
    let repo = registry.repo("fcos");
    let first = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", auth_arg],
    ));
    let report = first.ok();
    assert_eq!(first.outcome(), "pushed", "{}", first.context());
    // One token per repository and action set (pull; pull+push), not one per request.
    let fetched = t.token_requests();
    assert!(
        (1..=2).contains(&fetched.len()),
        "{} token requests: {:?}",
        fetched.len(),
        fetched
            .iter()
            .map(|r| (&r.user, &r.scopes, r.status))
            .collect::<Vec<_>>()
    );
    assert!(registry.requests().len() > 10);
    assert_eq!(
        served(&repo, &auth),
        report["manifest_list_digest"].as_str().unwrap()
    );

    let before = t.token_requests().len();
    let again = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", auth_arg],
    ));
    assert_eq!(again.ok()["outcome"], "up-to-date");
    assert_eq!(t.token_requests().len() - before, 1, "one pull token");
}

#[test]
fn a_token_answer_cut_in_its_body_is_fetched_again() {
    let t = tokens(Duration::from_secs(300));
    // The token server behind the fault proxy: its first answer stops a few
    // hundred bytes in, after the head (a JWT with its certificate chain is
    // kilobytes long).
    let proxy = Proxy::start(
        t.addr(),
        Faults::none().rule(Rule::nth(
            1,
            "GET",
            "/token",
            Action::CutAnswer { bytes: 300 },
        )),
    );
    let registry = Registry::start_with_token_realm(&t, &proxy.url("/token"));
    let wd = workdir();
    let auth = authfile(wd.path(), registry.addr(), "pusher", PASSWORD);
    let repo = registry.repo("fcos");
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &[
            "--tls-verify=false",
            "--authfile",
            auth.to_str().unwrap(),
            "--retry-delay",
            "20ms",
        ],
    ));
    assert_eq!(run.outcome(), "pushed", "{}", run.context());
    let cut = proxy
        .log()
        .into_iter()
        .find(|e| matches!(e.fault, Some(Action::CutAnswer { .. })))
        .expect("a token answer was cut");
    assert_eq!(cut.upstream_status, Some(200), "the cut answer was a token");
    assert_eq!(
        served(&repo, &auth),
        run.ok()["manifest_list_digest"].as_str().unwrap()
    );
}

#[test]
fn a_token_that_expires_mid_run_is_fetched_again() {
    // Tokens live 1 s; every request is 60 ms late through the proxy, so the
    // push outlives several tokens.
    let t = tokens(Duration::from_secs(1));
    let registry = Registry::start_with_token(&t);
    let proxy = Proxy::start(
        registry.addr(),
        Faults::none().latency(Duration::from_millis(60)),
    );
    let wd = workdir();
    let auth = authfile(wd.path(), proxy.addr(), "pusher", PASSWORD);
    let run = Run::of(&mut push(
        &proxy.repo("fcos"),
        wd.path(),
        &[
            "--tls-verify=false",
            "--authfile",
            auth.to_str().unwrap(),
            "--jobs",
            "1",
            // The test proxy relays an answer only after the whole request
            // body: a registry that answers a blob PUT 401 (the token just
            // expired) before reading it stalls there until this timeout.
            "--stall-timeout",
            "3s",
        ],
    ));
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    let fetched = t.token_requests().len();
    assert!(fetched >= 3, "tokens renewed as they expired: {fetched}");
    assert!(
        fetched < registry.requests().len() / 2,
        "but not fetched per request: {fetched}"
    );
}

#[test]
fn refusals_say_what_happened_without_showing_secrets() {
    let t = tokens(Duration::from_secs(300));
    let registry = Registry::start_with_token(&t);
    let wd = workdir();
    let repo = registry.repo("fcos");
    // An account that may pull but not push.
    let reader = authfile(wd.path(), registry.addr(), "reader", PASSWORD);
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        // one upload at a time, so that the count of token fetches is exact
        &[
            "--tls-verify=false",
            "--authfile",
            reader.to_str().unwrap(),
            "--jobs",
            "1",
        ],
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let fcos = "fcos";
    assert!(
        run.stderr.contains(&format!(
            "reader lacks push rights on {fcos} at {}",
            registry.addr()
        )),
        "{}",
        run.stderr
    );
    // The registry's insufficient_scope was answered by exactly one more fetch
    // of a push token (granted pull only again), then the refusal stood.
    let push_tokens = t
        .token_requests()
        .iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains("push")))
        .count();
    assert_eq!(push_tokens, 2, "{:?}", t.token_requests());
    // Wrong credentials: the token server refused them.
    let wrong = authfile(wd.path(), registry.addr(), "pusher", "not-the-password");
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", wrong.to_str().unwrap()],
    ));
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("token server")
            && run.stderr.contains("refused the credentials of pusher"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("not-the-password"));
    // No credentials at all.
    let none = wd.path().join("empty-auth.json");
    std::fs::write(&none, r#"{"auths": {}}"#).unwrap();
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", none.to_str().unwrap()],
    ));
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("no credentials"), "{}", run.stderr);
    // Nothing of any of it landed.
    assert!(registry.writes().iter().all(|w| w.status >= 400));
}

#[test]
fn debug_shows_each_request_but_never_a_credential_or_token() {
    let t = tokens(Duration::from_secs(300));
    let registry = Registry::start_with_token(&t);
    let wd = workdir();
    let auth = authfile(wd.path(), registry.addr(), "pusher", PASSWORD);
    let run = Run::of(&mut push(
        &registry.repo("fcos"),
        wd.path(),
        &[
            "--tls-verify=false",
            "--authfile",
            auth.to_str().unwrap(),
            "--debug",
        ],
    ));
    assert_eq!(run.ok()["outcome"], "pushed");
    let debug: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("pushgate: debug: "))
        .collect();
    assert!(debug.len() > 10, "{}", run.stderr);
    assert!(
        debug
            .iter()
            .any(|l| l.contains("PUT ") && l.contains("/manifests/stable") && l.contains("201")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD));
    // JWTs start with the base64 of '{"': eyJ.
    assert!(!run.stderr.contains("eyJ"), "{}", run.stderr);
    assert!(!run.stderr.to_lowercase().contains("authorization"));
}

#[test]
fn a_private_ca_is_trusted_from_cert_dir_or_certs_d_and_named_when_missing() {
    let pki = TestPki::new();
    let registry = Registry::start_tls(&pki);
    let wd = workdir();
    let repo = registry.repo("fcos");
    // Without the CA: a certificate problem, named as such, nothing written.
    let run = Run::of(&mut push(&repo, wd.path(), &["--retry-times", "0"]));
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        run.stderr.contains(&format!(
            "certificate of {} is not trusted",
            registry.addr()
        )) && run.stderr.contains("--cert-dir")
            && run.stderr.contains("--tls-verify=false"),
        "{}",
        run.stderr
    );
    // --cert-dir
    let dir = pki.cert_dir(ClientCert::Omit);
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--cert-dir", dir.to_str().unwrap()],
    ));
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert_eq!(
        skopeo_with_certs(&format!("{repo}:stable"), &dir),
        run.json["manifest_list_digest"].as_str().unwrap(),
        "skopeo, trusting the same CA, reads what was pushed"
    );
    // certs.d, found by host and port
    let certs_d = pki.certs_d(registry.addr(), ClientCert::Omit);
    let run = Run::of(push(&repo, wd.path(), &["--tag", "next"]).env("PUSHGATE_CERTS_D", &certs_d));
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    // --tls-verify=false is HTTPS without verification, not plain HTTP
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--tag", "third"],
    ));
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert!(registry.url("/").starts_with("https://"));
}

/// A pod with no CA roots at all (FROM scratch, no /etc/ssl): rustls-native-certs
/// reads only `SSL_CERT_FILE`/`SSL_CERT_DIR` when they are set, so an empty file
/// and an empty directory there are such a system. Without the fallback the HTTP
/// client would not even build ("No CA certificates were loaded from the system");
/// with it, pushgate trusts its bundled Mozilla roots, which do not hold the test
/// CA: the run meets the registry and names an untrusted certificate.
#[test]
fn with_no_system_roots_the_bundled_ones_are_trusted() {
    let pki = TestPki::new();
    let registry = Registry::start_tls(&pki);
    let wd = workdir();
    let repo = registry.repo("fcos");
    let empty = tempfile::tempdir().unwrap();
    let no_roots = |cmd: &mut Command| {
        cmd.env("SSL_CERT_FILE", empty.path().join("none.pem"))
            .env("SSL_CERT_DIR", empty.path())
            .env("PUSHGATE_CERTS_D", empty.path());
    };
    std::fs::write(empty.path().join("none.pem"), "").unwrap();
    let mut cmd = push(&repo, wd.path(), &["--retry-times", "0", "--debug"]);
    no_roots(&mut cmd);
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 1, "{}", run.context());
    assert!(
        run.stderr.contains("bundled Mozilla roots"),
        "the fallback is taken and said under --debug: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "certificate of {} is not trusted",
            registry.addr()
        )) && !run.stderr.contains("setting up the HTTP client"),
        "a certificate problem, not a client that cannot start: {}",
        run.stderr
    );
    assert!(registry.writes().is_empty());
    // A CA of its own is enough: no fallback needed, and the push lands.
    let dir = pki.cert_dir(ClientCert::Omit);
    let mut cmd = push(
        &repo,
        wd.path(),
        &["--cert-dir", dir.to_str().unwrap(), "--debug"],
    );
    no_roots(&mut cmd);
    let run = Run::of(&mut cmd);
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert!(
        !run.stderr.contains("bundled Mozilla roots"),
        "{}",
        run.stderr
    );
}

#[test]
fn mutual_tls_uses_the_client_certificate_of_cert_dir() {
    let pki = TestPki::new();
    let registry = Registry::start_mtls(&pki);
    let wd = workdir();
    let repo = registry.repo("fcos");
    let ca_only = pki.cert_dir(ClientCert::Omit);
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &[
            "--cert-dir",
            ca_only.to_str().unwrap(),
            "--retry-times",
            "0",
        ],
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let with_client = pki.cert_dir(ClientCert::Include);
    let run = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--cert-dir", with_client.to_str().unwrap()],
    ));
    assert_eq!(run.ok()["outcome"], "pushed", "{}", run.context());
    assert_eq!(
        skopeo_with_certs(&format!("{repo}:stable"), &with_client),
        run.json["manifest_list_digest"].as_str().unwrap()
    );
}

#[test]
fn anonymous_pull_and_authenticated_push() {
    let t = TokenServer::builder()
        .user("pusher", PASSWORD)
        .grant("pusher", "fcos*", &["pull", "push"])
        .public("fcos*")
        .start();
    let registry = Registry::start_with_token(&t);
    let wd = workdir();
    let auth = authfile(wd.path(), registry.addr(), "pusher", PASSWORD);
    let repo = registry.repo("fcos");
    let pushed = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", auth.to_str().unwrap()],
    ));
    assert_eq!(pushed.ok()["outcome"], "pushed", "{}", pushed.context());
    // Without any credentials, reading is enough to find it up to date.
    let empty = wd.path().join("empty-auth.json");
    std::fs::write(&empty, r#"{"auths": {}}"#).unwrap();
    let before = t.token_requests().len();
    let anon = Run::of(&mut push(
        &repo,
        wd.path(),
        &["--tls-verify=false", "--authfile", empty.to_str().unwrap()],
    ));
    assert_eq!(anon.ok()["outcome"], "up-to-date", "{}", anon.context());
    let asked = &t.token_requests()[before..];
    assert!(
        !asked.is_empty() && asked.iter().all(|r| r.user.is_none()),
        "anonymous tokens: {asked:?}"
    );
}

/// Talking TLS to a plain-HTTP registry, or plain HTTP to a TLS one, is not a
/// bad patch that retries cure: one attempt, and an error naming the flag that
/// fixes it.
#[test]
fn a_tls_mismatch_is_not_retried_and_names_the_fix() {
    let wd = workdir();
    let plain = Registry::start();
    let run = Run::of(&mut push(&plain.repo("fcos"), wd.path(), &["--debug"]));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not speak TLS") && error.contains("--plain-http"),
        "{error}"
    );
    let attempts = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("pushgate: debug: "))
        .count();
    assert_eq!(attempts, 1, "one attempt: {}", run.stderr);
    assert!(!run.stderr.contains("; retry "), "{}", run.stderr);

    let pki = TestPki::new();
    let tls = Registry::start_tls(&pki);
    let run = Run::of(&mut push(&tls.repo("fcos"), wd.path(), &["--plain-http"]));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTP 400") && error.contains("drop --plain-http"),
        "{error}"
    );
    assert!(!run.stderr.contains("; retry "), "{}", run.stderr);
}

#[test]
fn a_name_that_does_not_resolve_is_not_retried() {
    let wd = workdir();
    let run = Run::of(&mut push(
        "registry.invalid/fcos",
        wd.path(),
        &["--retry-delay", "2s"],
    ));
    assert_eq!(run.code, 1, "{}", run.context());
    let error = run.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("does not resolve") && error.contains("--repo"),
        "{error}"
    );
    assert!(!run.stderr.contains("; retry "), "{}", run.stderr);
}
