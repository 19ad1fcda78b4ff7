//! Self-tests of the token-auth and TLS test infrastructure (tests/it/support/token.rs,
//! tests/it/support/tls.rs), with skopeo and curl as the clients: the token server grants
//! what it should, the registry honours its tokens, and HTTPS registries are reachable
//! exactly when the client trusts the test CA (and, under mutual TLS, presents the client
//! certificate).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::support;
use crate::support::tls::{ClientCert, TestPki};
use crate::support::token::{REGISTRY_LEEWAY, TokenRequest, TokenServer, decode_jwt};
use crate::support::{Registry, Request};
use pushgate_sample::{SampleImage, write_oci_archive};
use serde_json::{Value, json};

const PUSHER_PASSWORD: &str = "pusher-Pa55";
const READER_PASSWORD: &str = "reader-Pa55";

/// The token server most tests use: "pusher" may pull and push `fcos*`, "reader" may
/// only pull it, and `public/*` is pullable by anyone.
fn tokens() -> TokenServer {
    token_builder().start()
}

fn token_builder() -> support::token::TokenServerBuilder {
    TokenServer::builder()
        .user("pusher", PUSHER_PASSWORD)
        .user("reader", READER_PASSWORD)
        .grant("pusher", "fcos*", &["pull", "push"])
        .grant("pusher", "public/*", &["pull", "push"])
        .grant("reader", "fcos*", &["pull"])
        .public("public/*")
}

/// A small OCI archive (two 1000-byte layers) in `dir`.
fn sample_archive(dir: &Path) -> PathBuf {
    let path = dir.join("image.ociarchive");
    let image = SampleImage {
        oci_arch: "amd64".into(),
        variant: None,
        layers: 2,
        layer_size: 1000,
        seed: 11,
    };
    write_oci_archive(&path, &image).expect("write sample archive");
    path
}

/// Runs skopeo with `args`; Ok(stdout) or Err(stderr).
fn skopeo(args: &[&str]) -> Result<String, String> {
    let out = support::skopeo().args(args).output().expect("run skopeo");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `skopeo copy oci-archive:ARCHIVE docker://DEST` with `flags` (credentials, TLS).
fn push(archive: &Path, dest: &str, flags: &[&str]) -> Result<String, String> {
    let src = format!("oci-archive:{}", archive.display());
    let dest = format!("docker://{dest}");
    let mut args = vec!["copy", "--retry-times", "0"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[&src, &dest]);
    skopeo(&args)
}

/// `skopeo inspect --raw docker://REF` with `flags`.
fn inspect(reference: &str, flags: &[&str]) -> Result<String, String> {
    let reference = format!("docker://{reference}");
    let mut args = vec!["inspect", "--raw", "--retry-times", "0"];
    args.extend_from_slice(flags);
    args.push(&reference);
    skopeo(&args)
}

/// Runs curl with `args`; returns (HTTP status, body). Panics if curl got no answer.
fn curl(args: &[&str]) -> (u16, String) {
    let out = curl_command(args).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line from -w");
    (code.trim().parse().expect("numeric status"), body.into())
}

fn curl_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args);
    cmd
}

/// GET the realm for `scopes` as `user:password` (None: anonymous); (status, body JSON).
fn fetch_token(tokens: &TokenServer, creds: Option<&str>, scopes: &[&str]) -> (u16, Value) {
    let mut url = format!("{}?service={}", tokens.realm(), tokens.service());
    for scope in scopes {
        url.push_str(&format!("&scope={scope}"));
    }
    let mut args = vec![url.as_str()];
    if let Some(creds) = creds {
        args.extend_from_slice(&["-u", creds]);
    }
    let (status, body) = curl(&args);
    (
        status,
        serde_json::from_str(&body).expect("token server JSON"),
    )
}

/// The `access` claim of `token`.
fn access(token: &str) -> Value {
    decode_jwt(token).1["access"].clone()
}

fn pusher_creds() -> String {
    format!("pusher:{PUSHER_PASSWORD}")
}

fn reader_creds() -> String {
    format!("reader:{READER_PASSWORD}")
}

fn successful_writes(registry: &Registry) -> Vec<Request> {
    registry
        .writes()
        .into_iter()
        .filter(|r| (200..300).contains(&r.status))
        .collect()
}

#[test]
fn token_server_grants_what_was_asked_and_allowed() {
    let tokens = tokens();
    let (status, body) = fetch_token(
        &tokens,
        Some(&pusher_creds()),
        &["repository:fcos/x:pull,push", "repository:other:pull"],
    );
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token");
    assert_eq!(
        body["access_token"], token,
        "both spellings carry the token"
    );
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'), "{body}");
    let (header, claims) = decode_jwt(token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1), "{header}");
    assert_eq!(claims["iss"], tokens.issuer());
    assert_eq!(claims["aud"], tokens.service());
    assert_eq!(claims["sub"], "pusher");
    assert_eq!(claims["nbf"], claims["iat"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    // "other" is not granted at all, so it is left out.
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "fcos/x", "actions": ["pull", "push"]}])
    );

    // reader: pull only, even when asking for push.
    let (status, body) = fetch_token(
        &tokens,
        Some(&reader_creds()),
        &["repository:fcos:pull,push"],
    );
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap();
    assert_eq!(
        access(token),
        json!([{"type": "repository", "name": "fcos", "actions": ["pull"]}])
    );
    assert_ne!(
        decode_jwt(token).1["jti"],
        claims["jti"],
        "every token has its own jti"
    );

    // Anonymous: pull on public repositories only.
    let (status, body) = fetch_token(
        &tokens,
        None,
        &["repository:public/x:pull,push", "repository:fcos:pull"],
    );
    assert_eq!(status, 200);
    let token = body["token"].as_str().unwrap();
    assert_eq!(decode_jwt(token).1["sub"], "");
    assert_eq!(
        access(token),
        json!([{"type": "repository", "name": "public/x", "actions": ["pull"]}])
    );

    // Bad credentials are refused, never downgraded to anonymous.
    let (status, _) = fetch_token(&tokens, Some("pusher:wrong"), &["repository:fcos:pull"]);
    assert_eq!(status, 401);
    let (status, _) = fetch_token(&tokens, Some("nobody:x"), &["repository:fcos:pull"]);
    assert_eq!(status, 401);

    let requests = tokens.token_requests();
    let summary: Vec<(Option<&str>, u16, Vec<&str>)> = requests
        .iter()
        .map(|r| {
            (
                r.user.as_deref(),
                r.status,
                r.granted.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("pusher"), 200, vec!["repository:fcos/x:pull,push"]),
            (Some("reader"), 200, vec!["repository:fcos:pull"]),
            (None, 200, vec!["repository:public/x:pull"]),
            (Some("pusher"), 401, vec![]),
            (Some("nobody"), 401, vec![]),
        ]
    );
    assert_eq!(
        requests[0].scopes,
        vec!["repository:fcos/x:pull,push", "repository:other:pull"]
    );
}

#[test]
fn pusher_pushes_through_the_token_registry_and_reuses_its_token() {
    let tokens = tokens();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let creds = pusher_creds();

    let dest = format!("{}:stable", registry.repo("fcos"));
    push(
        &archive,
        &dest,
        &["--dest-tls-verify=false", "--dest-creds", &creds],
    )
    .unwrap_or_else(|e| panic!("push as pusher: {e}"));

    let requests = tokens.token_requests();
    // skopeo asks once for the repository's scope and reuses that token for every blob
    // and the manifest.
    assert_eq!(requests.len(), 1, "{requests:?}");
    for request in &requests {
        assert_eq!(request.user.as_deref(), Some("pusher"), "{requests:?}");
        assert_eq!(request.status, 200, "{requests:?}");
    }
    assert!(
        requests
            .iter()
            .any(|r| r.granted == ["repository:fcos:pull,push"]),
        "{requests:?}"
    );
    // Two layers, a config and a manifest are written with far fewer tokens: skopeo
    // reuses its token for the scope.
    let writes = successful_writes(&registry);
    assert!(writes.len() >= 4, "{writes:?}");
    assert!(
        requests.len() < writes.len(),
        "{} token requests for {} writes: {requests:?}",
        requests.len(),
        writes.len()
    );
    assert!(
        writes
            .iter()
            .any(|w| w.method == "PUT" && w.path == "/v2/fcos/manifests/stable"),
        "{writes:?}"
    );
    // The registry first challenged the anonymous client.
    assert_eq!(registry.requests()[0].status, 401);

    // The pushed image reads back with the same credentials.
    inspect(&dest, &["--tls-verify=false", "--creds", &creds]).expect("inspect as pusher");
}

#[test]
fn reader_is_refused_on_push_but_can_pull() {
    let tokens = tokens();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = format!("{}:stable", registry.repo("fcos"));

    let reader = reader_creds();
    let err = push(
        &archive,
        &dest,
        &["--dest-tls-verify=false", "--dest-creds", &reader],
    )
    .expect_err("reader may not push");
    assert!(
        err.contains("requested access to the resource is denied"),
        "{err}"
    );
    // The registry refused the upload: the token grants no push.
    let writes = registry.writes();
    let refused_upload =
        |w: &Request| w.method == "POST" && w.path == "/v2/fcos/blobs/uploads/" && w.status == 401;
    assert!(writes.iter().any(refused_upload), "{writes:?}");
    assert!(
        successful_writes(&registry).is_empty(),
        "{:?}",
        registry.writes()
    );
    let asked_push = tokens
        .token_requests()
        .into_iter()
        .filter(|r| r.scopes.iter().any(|s| s.contains("push")))
        .collect::<Vec<TokenRequest>>();
    assert!(!asked_push.is_empty());
    for request in &asked_push {
        assert_eq!(request.user.as_deref(), Some("reader"));
        assert_eq!(
            request.status, 200,
            "a refusal is a token without push, not a 401"
        );
        assert!(
            request.granted.iter().all(|g| !g.contains("push")),
            "{request:?}"
        );
    }

    let pusher = pusher_creds();
    push(
        &archive,
        &dest,
        &["--dest-tls-verify=false", "--dest-creds", &pusher],
    )
    .unwrap_or_else(|e| panic!("push as pusher: {e}"));
    inspect(&dest, &["--tls-verify=false", "--creds", &reader])
        .unwrap_or_else(|e| panic!("reader pulls: {e}"));
    let last = tokens.token_requests().pop().unwrap();
    assert_eq!(last.user.as_deref(), Some("reader"));
    assert_eq!(last.granted, vec!["repository:fcos:pull"]);
}

#[test]
fn anonymous_pulls_public_repositories_only() {
    let tokens = tokens();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let creds = pusher_creds();
    let public = format!("{}:stable", registry.repo("public/fcos"));
    let private = format!("{}:stable", registry.repo("fcos"));
    for dest in [&public, &private] {
        push(
            &archive,
            dest,
            &["--dest-tls-verify=false", "--dest-creds", &creds],
        )
        .unwrap_or_else(|e| panic!("push {dest}: {e}"));
    }
    let pushes = tokens.token_requests().len();

    inspect(&public, &["--tls-verify=false"]).unwrap_or_else(|e| panic!("anonymous pull: {e}"));
    let err = inspect(&private, &["--tls-verify=false"]).expect_err("private needs credentials");
    assert!(
        err.contains("requested access to the resource is denied"),
        "{err}"
    );

    let anonymous = &tokens.token_requests()[pushes..];
    assert!(anonymous.len() >= 2, "{anonymous:?}");
    assert!(
        anonymous
            .iter()
            .all(|r| r.user.is_none() && r.status == 200)
    );
    assert!(
        anonymous
            .iter()
            .any(|r| r.granted == ["repository:public/fcos:pull"])
    );
    assert!(
        anonymous
            .iter()
            .filter(|r| r.scopes.iter().any(|s| s.contains(":fcos:")))
            .all(|r| r.granted.is_empty()),
        "{anonymous:?}"
    );
}

#[test]
fn a_wrong_password_is_refused_by_the_token_server() {
    let tokens = tokens();
    let registry = Registry::start_with_token(&tokens);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = format!("{}:stable", registry.repo("fcos"));

    let err = push(
        &archive,
        &dest,
        &["--dest-tls-verify=false", "--dest-creds", "pusher:wrong"],
    )
    .expect_err("a wrong password cannot push");
    assert!(err.contains("invalid username/password"), "{err}");

    let requests = tokens.token_requests();
    assert!(!requests.is_empty());
    assert!(
        requests
            .iter()
            .all(|r| r.user.as_deref() == Some("pusher") && r.status == 401),
        "{requests:?}"
    );
    // The registry saw only unauthenticated requests and wrote nothing.
    let seen = registry.requests();
    assert!(seen.iter().all(|r| r.status == 401), "{seen:?}");
}

#[test]
fn a_short_lived_token_expires_at_the_registry() {
    let tokens = token_builder()
        .lifetime(Duration::from_secs(2))
        .strict_expiry()
        .start();
    let registry = Registry::start_with_token(&tokens);
    let tags = registry.url("/v2/fcos/tags/list");
    let scope = "repository:fcos:pull";

    let (status, body) = fetch_token(&tokens, Some(&reader_creds()), &[scope]);
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 2, "clients are told the real lifetime");
    let token = body["token"].as_str().unwrap();
    let claims = decode_jwt(token).1;
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    // exp is moved back by the registry's leeway, so the registry stops accepting the
    // token 2 s after it was issued.
    assert_eq!(exp + REGISTRY_LEEWAY.as_secs() as i64 - iat, 2);

    // A fresh token is accepted: the repository is unknown (404), not unauthorized.
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(curl(&["-H", &bearer, &tags]).0, 404);

    // The same token as it is 3 s later: expired, refused.
    let old = tokens.mint(
        Some("reader"),
        &[scope],
        SystemTime::now() - Duration::from_secs(3),
    );
    let bearer = format!("Authorization: Bearer {old}");
    let (status, body) = curl(&["-H", &bearer, &tags]);
    assert_eq!(status, 401, "{body}");
    assert!(
        registry.app_log().contains("token not to be used after"),
        "{}",
        registry.app_log()
    );

    // mint() is not a request to the realm.
    assert_eq!(tokens.token_requests().len(), 1);
}

#[test]
fn without_strict_expiry_the_registry_leeway_keeps_an_expired_token_usable() {
    let tokens = token_builder().lifetime(Duration::from_secs(2)).start();
    let registry = Registry::start_with_token(&tokens);
    let tags = registry.url("/v2/fcos/tags/list");
    let issued = SystemTime::now() - Duration::from_secs(30);
    let token = tokens.mint(Some("reader"), &["repository:fcos:pull"], issued);
    let claims = decode_jwt(&token).1;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(
        curl(&["-H", &bearer, &tags]).0,
        404,
        "28 s past exp, within the leeway"
    );
}

#[test]
fn tls_registry_is_trusted_only_with_the_test_ca() {
    let pki = TestPki::new();
    let registry = Registry::start_tls(&pki);
    assert!(registry.url("/v2/").starts_with("https://127.0.0.1:"));
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = format!("{}:stable", registry.repo("fcos"));

    let err = push(&archive, &dest, &[]).expect_err("the test CA is not trusted by default");
    assert!(
        err.contains("x509: certificate signed by unknown authority"),
        "{err}"
    );
    assert!(registry.requests().is_empty(), "no request got through TLS");

    let cert_dir = pki.cert_dir(ClientCert::Omit);
    assert!(cert_dir.join("ca.crt").is_file());
    assert!(!cert_dir.join("client.cert").exists());
    let cert_dir = cert_dir.to_str().unwrap();
    push(&archive, &dest, &["--dest-cert-dir", cert_dir])
        .unwrap_or_else(|e| panic!("push with the CA: {e}"));
    assert!(successful_writes(&registry).len() >= 4);

    // A certs.d tree under $HOME/.config/containers is found by host:port.
    let home = tempfile::tempdir().unwrap();
    let certs_d = pki.certs_d(registry.addr(), ClientCert::Omit);
    let containers = home.path().join(".config/containers");
    std::fs::create_dir_all(&containers).unwrap();
    std::fs::rename(&certs_d, containers.join("certs.d")).unwrap();
    assert!(
        containers
            .join("certs.d")
            .join(registry.addr())
            .join("ca.crt")
            .is_file()
    );
    let out = support::skopeo()
        .env("HOME", home.path())
        .args(["inspect", "--raw", "--retry-times", "0"])
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // curl agrees: it fails without the CA and succeeds with it.
    let out = curl_command(&[&registry.url("/v2/")]).output().unwrap();
    assert!(!out.status.success());
    let ca = pki.ca.cert.to_str().unwrap();
    assert_eq!(curl(&["--cacert", ca, &registry.url("/v2/")]).0, 200);
    let localhost = registry.url("/v2/").replace("127.0.0.1", "localhost");
    assert_eq!(
        curl(&["--cacert", ca, &localhost]).0,
        200,
        "SAN DNS:localhost"
    );
}

#[test]
fn mutual_tls_requires_the_client_certificate() {
    let pki = TestPki::new();
    let registry = Registry::start_mtls(&pki);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = format!("{}:stable", registry.repo("fcos"));

    let ca_only = pki.cert_dir(ClientCert::Omit);
    let err = push(
        &archive,
        &dest,
        &["--dest-cert-dir", ca_only.to_str().unwrap()],
    )
    .expect_err("no client certificate, no push");
    assert!(err.contains("tls: bad certificate"), "{err}");
    assert!(registry.requests().is_empty());

    let with_client = pki.cert_dir(ClientCert::Include);
    assert!(with_client.join("client.cert").is_file());
    assert!(with_client.join("client.key").is_file());
    push(
        &archive,
        &dest,
        &["--dest-cert-dir", with_client.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("push with the client certificate: {e}"));
    assert!(successful_writes(&registry).len() >= 4);

    let ca = pki.ca.cert.to_str().unwrap();
    let out = curl_command(&["--cacert", ca, &registry.url("/v2/")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl without a client certificate");
    let (cert, key) = (
        pki.client.cert.to_str().unwrap(),
        pki.client.key.to_str().unwrap(),
    );
    let status = curl(&[
        "--cacert",
        ca,
        "--cert",
        cert,
        "--key",
        key,
        &registry.url("/v2/"),
    ])
    .0;
    assert_eq!(status, 200);
}

#[test]
fn token_auth_over_tls() {
    let pki = TestPki::new();
    let tokens = tokens();
    let registry = Registry::start_tls_with_token(&pki, &tokens);
    let tmp = tempfile::tempdir().unwrap();
    let archive = sample_archive(tmp.path());
    let dest = format!("{}:stable", registry.repo("fcos"));
    let cert_dir = pki.cert_dir(ClientCert::Omit);
    let creds = pusher_creds();
    push(
        &archive,
        &dest,
        &[
            "--dest-cert-dir",
            cert_dir.to_str().unwrap(),
            "--dest-creds",
            &creds,
        ],
    )
    .unwrap_or_else(|e| panic!("push over TLS with a token: {e}"));
    assert!(successful_writes(&registry).len() >= 4);
    assert!(tokens.token_requests().iter().all(|r| r.status == 200));
}

#[test]
fn scopes_may_repeat_or_share_a_parameter_and_patterns_glob() {
    let tokens = tokens();
    // containers/image repeats `scope`; some clients join scopes with a space (%20).
    let (status, body) = fetch_token(
        &tokens,
        Some(&pusher_creds()),
        &[
            "repository:fcos:pull%20repository:fcos-dev/x:push",
            "repository:nope:pull",
        ],
    );
    assert_eq!(status, 200);
    assert_eq!(
        access(body["token"].as_str().unwrap()),
        json!([
            {"type": "repository", "name": "fcos", "actions": ["pull"]},
            {"type": "repository", "name": "fcos-dev/x", "actions": ["push"]},
        ])
    );
    assert_eq!(
        tokens.token_requests()[0].scopes,
        vec![
            "repository:fcos:pull",
            "repository:fcos-dev/x:push",
            "repository:nope:pull"
        ]
    );

    // A token for another service would be refused by the registry anyway: say so early.
    let url = format!(
        "{}?service=other&scope=repository:fcos:pull",
        tokens.realm()
    );
    assert_eq!(curl(&[&url, "-u", &pusher_creds()]).0, 400);
    assert_eq!(tokens.token_requests().last().unwrap().status, 400);

    use support::token::glob_match;
    assert!(glob_match("fcos*", "fcos"));
    assert!(glob_match("fcos*", "fcos/x/y"));
    assert!(glob_match("a*/b*", "a1/b2"));
    assert!(!glob_match("fcos*", "rhcos"));
    assert!(!glob_match("fcos", "fcos/x"));
}

#[test]
fn the_token_server_stops_when_dropped() {
    let tokens = tokens();
    let addr: std::net::SocketAddr = tokens.addr().parse().unwrap();
    let (status, _) = fetch_token(&tokens, None, &[]);
    assert_eq!(status, 200, "no scope: an empty token");
    drop(tokens);
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "{addr} still accepts connections"
    );
}
