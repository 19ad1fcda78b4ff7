//! Tests of the integration-test harness itself (tests/it/support): the real registry starts,
//! its access log is counted correctly, auth works, and skopeo is wired up.

use std::process::Command;

use crate::support;
use crate::support::{Registry, Request};

/// Runs curl with `args` and returns (HTTP status, headers+body as text).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line from -w");
    (
        code.trim().parse().expect("numeric status"),
        body.to_string(),
    )
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn req(method: &str, path: &str, status: u16) -> Request {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        status,
    }
}

#[test]
fn registry_starts_and_answers_v2() {
    let registry = Registry::start();
    assert!(registry.addr().starts_with("127.0.0.1:"));
    assert_eq!(
        registry.repo("a/b"),
        format!("{}/a/b", registry.addr()),
        "repo() is addr/name"
    );
    let (status, _) = curl(&[&registry.url("/v2/")]);
    assert_eq!(status, 200);
    // The readiness probes and sentinels of the harness are not reported.
    assert_eq!(registry.requests(), vec![req("GET", "/v2/", 200)]);
    assert!(registry.writes().is_empty());
}

/// Uploads `data` to `repo` with curl: POST an upload session, then PUT `?digest=` with the
/// body (distribution 2.8 ignores `?digest=` on the POST: no monolithic POST upload).
/// Returns the digest and the upload session path (as the access log shows it).
fn upload_blob(registry: &Registry, repo: &str, data: &[u8]) -> (String, String) {
    let digest = support::sha256_digest(data);
    let (status, response) = curl(&[
        "-X",
        "POST",
        &registry.url(&format!("/v2/{repo}/blobs/uploads/")),
    ]);
    assert_eq!(status, 202, "{response}");
    let location = header(&response, "Location").expect("Location header");
    let location = match location.strip_prefix(&format!("http://{}", registry.addr())) {
        Some(path) => path,
        None => location,
    };
    assert!(location.starts_with('/'), "{location}");
    let upload_path = location.split('?').next().unwrap().to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let put_url = registry.url(&format!(
        "{location}{separator}digest={}",
        digest.replace(':', "%3A")
    ));
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("blob");
    std::fs::write(&body, data).unwrap();
    let (status, response) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", body.display()),
        &put_url,
    ]);
    assert_eq!(status, 201, "{response}");
    assert_eq!(
        header(&response, "Docker-Content-Digest"),
        Some(digest.as_str())
    );
    (digest, upload_path)
}

#[test]
fn blob_upload_is_counted_as_writes_and_later_reads_are_seen() {
    let registry = Registry::start();
    let (digest, upload_path) = upload_blob(&registry, "test", b"pushgate harness blob\n");

    // the upload's state rides in the query; only the path is compared here
    let writes_seen = || -> Vec<Request> {
        registry
            .writes()
            .into_iter()
            .map(|r| Request {
                query: String::new(),
                ..r
            })
            .collect()
    };
    let writes = writes_seen();
    assert_eq!(
        writes,
        vec![
            req("POST", "/v2/test/blobs/uploads/", 202),
            req("PUT", &upload_path, 201),
        ]
    );

    let blob_path = format!("/v2/test/blobs/{digest}");
    let (status, _) = curl(&["-I", &registry.url(&blob_path)]);
    assert_eq!(status, 200);
    let requests = registry.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(requests.last(), Some(&req("HEAD", &blob_path, 200)));
    assert_eq!(writes_seen(), writes, "a HEAD is not a write");
}

#[test]
fn two_registries_get_different_ports() {
    let a = Registry::start();
    let b = Registry::start();
    assert_ne!(a.addr(), b.addr());
    assert_eq!(curl(&[&a.url("/v2/")]).0, 200);
    assert_eq!(curl(&[&b.url("/v2/")]).0, 200);
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
}

#[test]
fn htpasswd_registry_requires_credentials() {
    let registry = Registry::start_with_htpasswd("alice", "s3cret pass");
    let (status, response) = curl(&[&registry.url("/v2/")]);
    assert_eq!(status, 401, "{response}");
    let challenge = header(&response, "WWW-Authenticate").expect("challenge");
    assert!(challenge.contains("pushgate-test"), "{challenge}");
    assert_eq!(
        curl(&["-u", "alice:s3cret pass", &registry.url("/v2/")]).0,
        200
    );
    assert_eq!(curl(&["-u", "alice:wrong", &registry.url("/v2/")]).0, 401);
    assert_eq!(
        registry.requests(),
        vec![
            req("GET", "/v2/", 401),
            req("GET", "/v2/", 200),
            req("GET", "/v2/", 401),
        ]
    );

    let dir = tempfile::tempdir().unwrap();
    let authfile = support::write_authfile(dir.path(), registry.addr(), "alice", "s3cret pass");
    let missing = format!("{}:latest", registry.repo("nothing/here"));
    let err = support::skopeo_inspect_raw(&missing, Some(&authfile))
        .expect_err("a missing tag cannot be inspected");
    assert!(err.contains("manifest unknown"), "{err}");
    assert!(!err.contains("unauthorized"), "{err}");

    // Without the authfile (and with no user auth file around) it is an auth error.
    let err = support::skopeo_digest(&missing, None).expect_err("anonymous is refused");
    assert!(err.contains("unauthorized"), "{err}");
}

#[test]
fn skopeo_reads_a_manifest_byte_for_byte() {
    let registry = Registry::start();
    let (config_digest, _) = upload_blob(&registry, "img", b"{}");

    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
    let (status, response) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &registry.url("/v2/img/manifests/v1"),
    ]);
    assert_eq!(status, 201, "{response}");

    let reference = format!("{}:v1", registry.repo("img"));
    let raw = support::skopeo_inspect_raw(&reference, None).expect("inspect");
    assert_eq!(raw, manifest.as_bytes());
    let digest = support::skopeo_digest(&reference, None).expect("digest");
    assert_eq!(digest, support::sha256_digest(manifest.as_bytes()));
    assert_eq!(
        header(&response, "Docker-Content-Digest"),
        Some(digest.as_str())
    );
}

#[test]
fn restart_keeps_port_storage_and_log() {
    let mut registry = Registry::start();
    let addr = registry.addr().to_string();
    assert_eq!(curl(&[&registry.url("/v2/")]).0, 200);
    registry.restart();
    assert_eq!(registry.addr(), addr);
    assert_eq!(curl(&[&registry.url("/v2/_catalog")]).0, 200);
    assert_eq!(
        registry.requests(),
        vec![req("GET", "/v2/", 200), req("GET", "/v2/_catalog", 200)]
    );
    registry.stop();
}

#[test]
fn pushgate_command_has_a_clean_auth_environment() {
    let cmd = support::pushgate();
    let envs: Vec<_> = cmd.get_envs().collect();
    let get = |key: &str| {
        envs.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.map(|v| v.to_owned()))
    };
    assert_eq!(get("REGISTRY_AUTH_FILE"), Some(None), "removed");
    let home = get("HOME").flatten().expect("HOME set");
    assert_eq!(get("XDG_RUNTIME_DIR").flatten(), Some(home.clone()));
    let home = std::path::Path::new(&home);
    assert!(home.is_dir());
    assert!(!home.join("containers/auth.json").exists());
    assert!(!home.join(".docker/config.json").exists());
}

#[test]
fn access_log_lines_parse() {
    let line = r#"127.0.0.1 - - [27/Nov/2026:23:30:40 +0000] "PUT /v2/t/blobs/uploads/abc?_state=x&digest=sha256%3A00 HTTP/1.1" 201 0 "" "curl/7.88.1""#;
    assert_eq!(
        support::parse_access_line(line),
        Some(req(
            "PUT",
            "/v2/t/blobs/uploads/abc?_state=x&digest=sha256%3A00",
            201
        ))
    );
    assert_eq!(support::parse_access_line("garbage"), None);
}
