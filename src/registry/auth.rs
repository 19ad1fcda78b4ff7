//! Registry credentials: which auth file to read, and which of its entries
//! applies to a given registry and repository.
//!
//! This module owns the podman/skopeo conventions that `cosa
//! push-container-manifest` relies on:
//!
//! * [`find_auth_file`] picks the auth file: `--authfile`, else
//!   `REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`, else
//!   `$HOME/.docker/config.json`.
//! * [`parse_auth_file`] reads the `auths` map of containers-auth.json(5)
//!   (which is also the shape of docker's `config.json`), and
//!   [`AuthFile::lookup`] / [`credentials_for`] pick the entry for an image.
//!
//! # Security rule
//!
//! Credentials are only ever returned for the registry host (and port) they are
//! filed under: a key is matched against `registry/repository` exactly, on `/`
//! boundaries, so an entry for `quay.io` is never used for `quay.io.evil.com`,
//! `quay.io:8443` or `evil.com/quay.io`. Passwords never appear in `Debug`
//! output ([`Credentials`] has no `Display`), and no error message produced
//! here contains any part of an `auth` value, encoded or decoded: errors name
//! the file and the registry key only.
//!
//! # Credential helpers
//!
//! `credHelpers` (registry → helper) and `credsStore` (every other registry)
//! name `docker-credential-NAME` programs, asked first as docker and podman do;
//! a helper that has nothing for the registry leaves the `auths` entries to
//! answer. What a helper answers follows the same rules: never printed, never
//! sent to another registry.
//!
//! # What is not supported
//!
//! Only the `auth` field (base64 of `user:password`) of `auths` entries is used.
//! An entry whose `auth` is missing or empty — e.g. one holding only an
//! `identitytoken`, or the empty `{}` entries docker writes when a credential
//! helper is configured — is treated as having no credentials: if it is the
//! most specific entry for an image, the lookup yields `None` (anonymous
//! access), as podman does.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

/// Username + password for one registry. Debug prints the username and "<redacted>".
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The auth file to use, from the process environment.
///
/// `explicit` (`--authfile`) must exist, else the error names the flag and the
/// path. Otherwise `REGISTRY_AUTH_FILE`, if set (and non-empty), must exist,
/// else the error names the variable. Otherwise the first existing one of
/// `$XDG_RUNTIME_DIR/containers/auth.json` and `$HOME/.docker/config.json`;
/// `Ok(None)` if neither exists (anonymous access).
pub fn find_auth_file(explicit: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    find_auth_file_in(explicit, &|name| {
        std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
    })
}

/// [`find_auth_file`] with the environment given as a function (for tests).
/// Variables that are unset or empty are treated alike.
pub fn find_auth_file_in(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<PathBuf>> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());

    if let Some(path) = explicit {
        return match fs::metadata(path) {
            Ok(_) => Ok(Some(path.to_path_buf())),
            Err(e) => Err(anyhow!(
                "--authfile {}: cannot use auth file: {e}",
                path.display()
            )),
        };
    }
    if let Some(value) = var("REGISTRY_AUTH_FILE") {
        let path = PathBuf::from(value);
        return match fs::metadata(&path) {
            Ok(_) => Ok(Some(path)),
            Err(e) => Err(anyhow!(
                "REGISTRY_AUTH_FILE={}: cannot use auth file: {e}",
                path.display()
            )),
        };
    }
    let defaults = [
        var("XDG_RUNTIME_DIR").map(|dir| Path::new(&dir).join("containers/auth.json")),
        var("HOME").map(|home| Path::new(&home).join(".docker/config.json")),
    ];
    Ok(defaults.into_iter().flatten().find(|path| path.exists()))
}

/// Credentials for `registry` (host[:port], as in a reference: "quay.io",
/// "localhost:5000", "docker.io") and `repository` ("fedora/fedora-coreos"),
/// read from `auth_file`. `Ok(None)` means no usable entry: go anonymous.
///
/// As docker and podman do, a credential helper named for the registry in
/// `credHelpers`, else the `credsStore`, is asked first (`docker-credential-NAME
/// get`, the registry on stdin); a helper that knows nothing of the registry
/// leaves the `auths` entries to answer. A helper that is missing or fails is an
/// error naming it.
pub fn credentials_for(
    auth_file: &Path,
    registry: &str,
    repository: &str,
) -> anyhow::Result<Option<Credentials>> {
    let bytes = fs::read(auth_file)
        .with_context(|| format!("reading auth file {}", auth_file.display()))?;
    let file = parse_auth_file(auth_file, &bytes)?;
    if let Some(helper) = file.helper_for(registry)
        && let Some(c) = run_helper(helper, registry)
            .with_context(|| format!("auth file {}", auth_file.display()))?
    {
        return Ok(Some(c));
    }
    Ok(file.lookup(registry, repository))
}

/// Asks `docker-credential-NAME get` for `registry`'s credentials; `None` when
/// it has none. Its answer (`{"ServerURL", "Username", "Secret"}`) never
/// appears in an error.
fn run_helper(name: &str, registry: &str) -> anyhow::Result<Option<Credentials>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow!("credential helper {program} (for {registry}) cannot be run: {e}"))?;
    // docker names Docker Hub by its old index URL when asking helpers.
    let server = match normalize_host(registry).as_str() {
        "docker.io" => "https://index.docker.io/v1/".to_string(),
        other => other.to_string(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| anyhow!("credential helper {program} (for {registry}): {e}"))?;
    if !out.status.success() {
        // The helpers' own words for "nothing stored for this server" (looked
        // at, never repeated: a helper's output may hold a secret).
        let said = |b: &[u8]| String::from_utf8_lossy(b).to_lowercase();
        if said(&out.stdout).contains("credentials not found")
            || said(&out.stderr).contains("credentials not found")
        {
            return Ok(None);
        }
        bail!(
            "credential helper {program} (for {registry}) failed ({}); its output is not \
             shown, since it may hold a secret: run `echo {server} | {program} get` to see it",
            out.status
        );
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out.stdout).map_err(|_| {
        anyhow!(
            "credential helper {program} (for {registry}) answered something that is not its JSON"
        )
    })?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: a.username,
        password: a.secret,
    }))
}

/// The `auths` map of one auth file, keys normalised and every entry decoded.
#[derive(Debug, Clone, Default)]
pub struct AuthFile {
    /// Normalised key (`host[:port][/path]`) → entry.
    entries: HashMap<String, Entry>,
    /// `credHelpers`: normalised host → helper name (`docker-credential-NAME`).
    helpers: HashMap<String, String>,
    /// `credsStore`: the helper for every registry without one of its own.
    store: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    /// Whether the key was written in normalised form already; such a key wins
    /// over others normalising to the same thing (`docker.io` over
    /// `https://index.docker.io/v1/`), as in containers/image.
    canonical: bool,
    /// `None` for entries without an `auth` value.
    credentials: Option<Credentials>,
}

impl AuthFile {
    /// The credentials for `registry/repository`: the entry with the longest
    /// key that equals it or is a prefix of it ending at a `/`. The host part
    /// must match exactly (port included, case aside); `index.docker.io` and
    /// `registry-1.docker.io` count as `docker.io`. `repository` must be in the
    /// form the registry sees (`library/fedora` on docker.io, no tag).
    pub fn lookup(&self, registry: &str, repository: &str) -> Option<Credentials> {
        // A registry with a '/' is not a host[:port]; refuse rather than guess.
        if registry.is_empty() || registry.contains('/') {
            return None;
        }
        let host = normalize_host(registry);
        let repository = repository.trim_matches('/');
        let mut candidate = if repository.is_empty() {
            host
        } else {
            format!("{host}/{repository}")
        };
        // Every candidate starts with the whole host: truncation only happens
        // at a '/', and the host has none.
        loop {
            if let Some(entry) = self.entries.get(&candidate) {
                return entry.credentials.clone();
            }
            let cut = candidate.rfind('/')?;
            candidate.truncate(cut);
        }
    }

    /// Whether the file has no entries and no helpers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.helpers.is_empty() && self.store.is_none()
    }

    /// The credential helper for `registry`: its own in `credHelpers`, else
    /// `credsStore`.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.helpers
            .get(&normalize_host(registry))
            .or(self.store.as_ref())
            .map(String::as_str)
    }
}

/// Parses the bytes of the auth file at `path` (the path is used in errors).
///
/// A missing or `null` `auths` means no entries. Errors — malformed JSON, an
/// entry that is not an object, an `auth` that is not a string, not base64, not
/// UTF-8 or without a `:` — name the file and the registry key, never the
/// value.
pub fn parse_auth_file(path: &Path, bytes: &[u8]) -> anyhow::Result<AuthFile> {
    let file = path.display();
    let root: Value = serde_json::from_slice(bytes).map_err(|e| {
        // Only syntax errors can occur when parsing into a Value, and their
        // messages never quote the input; still, say nothing more otherwise.
        match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                anyhow!("auth file {file}: malformed JSON: {e}")
            }
            _ => anyhow!(
                "auth file {file}: malformed JSON at line {} column {}",
                e.line(),
                e.column()
            ),
        }
    })?;
    let Value::Object(root) = root else {
        bail!("auth file {file}: expected a JSON object at the top level");
    };
    let mut helpers = HashMap::new();
    match root.get("credHelpers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (host, name) in map {
                let Value::String(name) = name else {
                    bail!("auth file {file}: credHelpers entry for {host:?} is not a string");
                };
                check_helper_name(name).map_err(|why| {
                    anyhow!("auth file {file}: credHelpers entry for {host:?}: {why}")
                })?;
                helpers.insert(
                    normalize_host(strip_scheme(host).0.trim_end_matches('/')),
                    name.clone(),
                );
            }
        }
        Some(_) => bail!("auth file {file}: \"credHelpers\" is not a JSON object"),
    }
    let store = match root.get("credsStore") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.is_empty() => None,
        Some(Value::String(name)) => {
            check_helper_name(name)
                .map_err(|why| anyhow!("auth file {file}: credsStore: {why}"))?;
            Some(name.clone())
        }
        Some(_) => bail!("auth file {file}: \"credsStore\" is not a string"),
    };
    let auths = match root.get("auths") {
        None | Some(Value::Null) => {
            return Ok(AuthFile {
                helpers,
                store,
                ..AuthFile::default()
            });
        }
        Some(Value::Object(auths)) => auths,
        Some(_) => bail!("auth file {file}: \"auths\" is not a JSON object"),
    };

    let mut entries: HashMap<String, Entry> = HashMap::new();
    for (key, value) in auths {
        let credentials = decode_entry(value)
            .map_err(|why| anyhow!("auth file {file}: entry for registry {key:?}: {why}"))?;
        let normalized = normalize_key(key);
        let entry = Entry {
            canonical: normalized == *key,
            credentials,
        };
        match entries.get(&normalized) {
            // Keep the first of several non-canonical spellings, and a
            // canonical one over any other.
            Some(existing) if existing.canonical || !entry.canonical => {}
            _ => {
                entries.insert(normalized, entry);
            }
        }
    }
    Ok(AuthFile {
        entries,
        helpers,
        store,
    })
}

/// A helper name is a program-name suffix: no path, nothing a shell would read.
fn check_helper_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("{name:?} is not a credential helper name"));
    }
    Ok(())
}

/// Decodes one `auths` entry. The error strings must not contain the value.
fn decode_entry(value: &Value) -> Result<Option<Credentials>, &'static str> {
    let Value::Object(entry) = value else {
        return Err("expected a JSON object");
    };
    let auth = match entry.get("auth") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(auth)) => auth,
        Some(_) => return Err("\"auth\" is not a string"),
    };
    if auth.is_empty() {
        return Ok(None);
    }
    // Standard alphabet; padding optional (some tools drop it).
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // The decoder's own error names the offending byte: do not pass it on.
    let decoded = BASE64
        .decode(auth.trim())
        .map_err(|_| "\"auth\" is not valid base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "\"auth\" does not decode to UTF-8")?;
    let Some((username, password)) = decoded.split_once(':') else {
        return Err("\"auth\" does not decode to \"user:password\" (no ':')");
    };
    Ok(Some(Credentials {
        username: username.to_owned(),
        password: password.to_owned(),
    }))
}

/// `host[:port][/path]` from an auth file key. Docker-style keys with a scheme
/// (`https://index.docker.io/v1/`, `http://host:5000/v2/`) stand for their
/// host only; other keys keep their path, minus trailing slashes.
fn normalize_key(key: &str) -> String {
    let (rest, had_scheme) = strip_scheme(key);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = normalize_host(host);
    let path = if had_scheme {
        ""
    } else {
        path.trim_end_matches('/')
    };
    if path.is_empty() {
        host
    } else {
        format!("{host}/{path}")
    }
}

fn strip_scheme(key: &str) -> (&str, bool) {
    for scheme in ["https://", "http://"] {
        // `get`: a key is any JSON string, and a byte count may end inside a
        // character of it.
        if key
            .get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        {
            return (&key[scheme.len()..], true);
        }
    }
    (key, false)
}

/// Host names compare case-insensitively; docker.io has several spellings.
fn normalize_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    fn parse(json: &str) -> anyhow::Result<AuthFile> {
        parse_auth_file(Path::new("/etc/auth.json"), json.as_bytes())
    }

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        })
    }

    fn auth_file(entries: &[(&str, &str)]) -> AuthFile {
        let auths: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(k, up)| ((*k).to_owned(), serde_json::json!({ "auth": b64(up) })))
            .collect();
        let json = serde_json::json!({ "auths": auths }).to_string();
        parse(&json).unwrap()
    }

    // --- find_auth_file ---

    struct Env(Vec<(&'static str, String)>);
    impl Env {
        fn get(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn touch(path: &Path) -> PathBuf {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "{}").unwrap();
        path.to_path_buf()
    }

    #[test]
    fn search_order_prefers_first_existing() {
        let dir = tempfile::tempdir().unwrap();
        let explicit = touch(&dir.path().join("explicit.json"));
        let registry_auth_file = touch(&dir.path().join("reg.json"));
        let xdg = dir.path().join("run");
        let xdg_file = touch(&xdg.join("containers/auth.json"));
        let home = dir.path().join("home");
        let home_file = touch(&home.join(".docker/config.json"));

        let all = Env(vec![
            (
                "REGISTRY_AUTH_FILE",
                registry_auth_file.display().to_string(),
            ),
            ("XDG_RUNTIME_DIR", xdg.display().to_string()),
            ("HOME", home.display().to_string()),
        ]);
        let find = |explicit: Option<&Path>, env: &Env| {
            find_auth_file_in(explicit, &|k| env.get(k)).unwrap()
        };

        assert_eq!(find(Some(&explicit), &all), Some(explicit.clone()));
        assert_eq!(find(None, &all), Some(registry_auth_file.clone()));

        let no_reg = Env(all.0[1..].to_vec());
        assert_eq!(find(None, &no_reg), Some(xdg_file.clone()));

        // Empty variables count as unset.
        let empty_reg = Env(vec![
            ("REGISTRY_AUTH_FILE", String::new()),
            ("XDG_RUNTIME_DIR", xdg.display().to_string()),
        ]);
        assert_eq!(find(None, &empty_reg), Some(xdg_file.clone()));

        let only_home = Env(all.0[2..].to_vec());
        assert_eq!(find(None, &only_home), Some(home_file.clone()));

        // XDG set but its file missing: fall through to HOME.
        fs::remove_file(&xdg_file).unwrap();
        assert_eq!(find(None, &no_reg), Some(home_file.clone()));

        fs::remove_file(&home_file).unwrap();
        assert_eq!(find(None, &no_reg), None);
        assert_eq!(find(None, &Env(vec![])), None);
    }

    #[test]
    fn explicit_missing_is_an_error_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        // Even with a usable REGISTRY_AUTH_FILE: an explicit choice is not
        // silently replaced.
        let other = touch(&dir.path().join("reg.json"));
        let env = Env(vec![("REGISTRY_AUTH_FILE", other.display().to_string())]);
        let err = find_auth_file_in(Some(&missing), &|k| env.get(k))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--authfile"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn registry_auth_file_missing_is_an_error_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        touch(&home.join(".docker/config.json"));
        let missing = dir.path().join("nope.json");
        let env = Env(vec![
            ("REGISTRY_AUTH_FILE", missing.display().to_string()),
            ("HOME", home.display().to_string()),
        ]);
        let err = find_auth_file_in(None, &|k| env.get(k))
            .unwrap_err()
            .to_string();
        assert!(err.contains("REGISTRY_AUTH_FILE"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    // --- lookup ---

    #[test]
    fn most_specific_key_wins() {
        let file = auth_file(&[
            ("quay.io", "reg:r"),
            ("quay.io/fedora", "ns:n"),
            ("quay.io/fedora/fedora-coreos", "repo:p"),
        ]);
        assert_eq!(
            file.lookup("quay.io", "fedora/fedora-coreos"),
            creds("repo", "p")
        );
        assert_eq!(file.lookup("quay.io", "fedora/other"), creds("ns", "n"));
        // Prefixes end at '/' boundaries only.
        assert_eq!(
            file.lookup("quay.io", "fedora/fedora-coreos-extra"),
            creds("ns", "n")
        );
        assert_eq!(file.lookup("quay.io", "fedoraproject/x"), creds("reg", "r"));
        assert_eq!(file.lookup("quay.io", "coreos/x/y"), creds("reg", "r"));
        assert_eq!(
            file.lookup("quay.io", "fedora/fedora-coreos/sub"),
            creds("repo", "p")
        );
    }

    #[test]
    fn host_matching_is_exact() {
        let file = auth_file(&[("quay.io", "q:q"), ("localhost:5000", "l:l")]);
        assert_eq!(file.lookup("quay.io", "a/b"), creds("q", "q"));
        assert_eq!(file.lookup("QUAY.IO", "a/b"), creds("q", "q"));
        assert_eq!(file.lookup("quay.io.evil.com", "a/b"), None);
        assert_eq!(file.lookup("evil.com", "quay.io"), None);
        assert_eq!(file.lookup("evil.com", "quay.io/a/b"), None);
        assert_eq!(file.lookup("evil.com/quay.io", "a/b"), None);
        assert_eq!(file.lookup("quay.io:443", "a/b"), None);
        assert_eq!(file.lookup("io", "a/b"), None);
        assert_eq!(file.lookup("", "quay.io"), None);

        assert_eq!(file.lookup("localhost:5000", "x"), creds("l", "l"));
        assert_eq!(file.lookup("localhost", "x"), None);
        assert_eq!(file.lookup("localhost:5001", "x"), None);
        assert_eq!(file.lookup("localhost:50000", "x"), None);
    }

    #[test]
    fn namespace_keys_do_not_leak_to_other_hosts() {
        let file = auth_file(&[("quay.io/fedora", "n:n")]);
        assert_eq!(file.lookup("quay.io", "fedora/x"), creds("n", "n"));
        assert_eq!(file.lookup("quay.io", "other/x"), None);
        assert_eq!(file.lookup("evil.com", "quay.io/fedora/x"), None);
    }

    #[test]
    fn docker_style_keys_are_normalized_to_the_host() {
        let file = auth_file(&[
            ("https://index.docker.io/v1/", "d:d"),
            ("http://registry.local:5000/v2/", "r:r"),
            ("https://ghcr.io", "g:g"),
        ]);
        assert_eq!(file.lookup("docker.io", "library/fedora"), creds("d", "d"));
        assert_eq!(file.lookup("index.docker.io", "x/y"), creds("d", "d"));
        assert_eq!(file.lookup("registry-1.docker.io", "x/y"), creds("d", "d"));
        assert_eq!(file.lookup("registry.local:5000", "a"), creds("r", "r"));
        assert_eq!(file.lookup("registry.local", "a"), None);
        assert_eq!(file.lookup("ghcr.io", "o/r"), creds("g", "g"));
        // The path of a docker-style key is an API path, not a namespace.
        assert_eq!(file.lookup("docker.io", "v1"), creds("d", "d"));

        let file = auth_file(&[("registry-1.docker.io", "a:a"), ("quay.io/ns/", "n:n")]);
        assert_eq!(file.lookup("docker.io", "library/x"), creds("a", "a"));
        assert_eq!(file.lookup("quay.io", "ns/x"), creds("n", "n"));
    }

    #[test]
    fn canonical_key_wins_over_docker_style_duplicate() {
        for order in [
            [
                ("https://index.docker.io/v1/", "old:o"),
                ("docker.io", "new:n"),
            ],
            [
                ("docker.io", "new:n"),
                ("https://index.docker.io/v1/", "old:o"),
            ],
        ] {
            let file = auth_file(&order);
            assert_eq!(file.lookup("docker.io", "a/b"), creds("new", "n"));
        }
    }

    #[test]
    fn password_may_contain_colons() {
        let file = auth_file(&[("quay.io", "robot+ci:pa:ss::word:")]);
        assert_eq!(
            file.lookup("quay.io", "a"),
            creds("robot+ci", "pa:ss::word:")
        );
        let file = auth_file(&[("quay.io", "user:")]);
        assert_eq!(file.lookup("quay.io", "a"), creds("user", ""));
    }

    #[test]
    fn entries_without_auth_give_no_credentials() {
        let json = serde_json::json!({
            "auths": {
                "quay.io": { "auth": b64("reg:r") },
                "quay.io/tokens": { "identitytoken": "tok" },
                "quay.io/empty": { "auth": "" },
                "ghcr.io": {},
            },
            "credsStore": "desktop",
            "credHelpers": { "gcr.io": "gcloud" },
        });
        let file = parse(&json.to_string()).unwrap();
        assert_eq!(file.lookup("quay.io", "other/x"), creds("reg", "r"));
        // The most specific entry decides, even when it has no credentials.
        assert_eq!(file.lookup("quay.io", "tokens/x"), None);
        assert_eq!(file.lookup("quay.io", "empty/x"), None);
        assert_eq!(file.lookup("ghcr.io", "o/r"), None);
        assert_eq!(file.lookup("gcr.io", "p/i"), None);
    }

    #[test]
    fn files_without_auths_are_empty() {
        assert!(parse("{}").unwrap().is_empty());
        assert!(parse(r#"{"auths": null}"#).unwrap().is_empty());
        // A credential store is something: it is asked for every registry.
        let store = parse(r#"{"credsStore": "pass"}"#).unwrap();
        assert!(!store.is_empty());
        assert_eq!(store.helper_for("quay.io"), Some("pass"));
        let helpers = parse(r#"{"credHelpers": {"Quay.io": "q"}, "credsStore": "pass"}"#).unwrap();
        assert_eq!(helpers.helper_for("quay.io"), Some("q"));
        assert_eq!(helpers.helper_for("ghcr.io"), Some("pass"));
        assert!(parse(r#"{"credsStore": "../evil"}"#).is_err());
        assert!(
            parse(r#"{"auths": {}}"#)
                .unwrap()
                .lookup("quay.io", "a")
                .is_none()
        );
    }

    // --- errors ---

    const SECRET: &str = "TOPSECRETVALUE";

    fn parse_err(json: &str) -> String {
        format!("{:#}", parse(json).unwrap_err())
    }

    #[test]
    fn bad_base64_errors_name_file_and_key_but_not_the_value() {
        let err = parse_err(&format!(
            r#"{{"auths": {{"quay.io/ns": {{"auth": "{SECRET}$$$"}}}}}}"#
        ));
        assert!(err.contains("/etc/auth.json"), "{err}");
        assert!(err.contains("quay.io/ns"), "{err}");
        assert!(err.contains("base64"), "{err}");
        assert!(!err.contains(SECRET) && !err.contains('$'), "{err}");
        // The decoder's message would name the offending byte and offset.
        assert!(!err.contains("36") && !err.contains("offset"), "{err}");
    }

    #[test]
    fn auth_without_colon_is_an_error_without_the_value() {
        let encoded = b64(SECRET);
        let err = parse_err(&format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{encoded}"}}}}}}"#
        ));
        assert!(err.contains("/etc/auth.json"), "{err}");
        assert!(err.contains("\"quay.io\""), "{err}");
        assert!(err.contains("':'"), "{err}");
        assert!(!err.contains(SECRET) && !err.contains(&encoded), "{err}");
    }

    #[test]
    fn non_utf8_auth_is_an_error() {
        let encoded = STANDARD.encode([0xff, b':', 0xfe]);
        let err = parse_err(&format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{encoded}"}}}}}}"#
        ));
        assert!(err.contains("quay.io") && err.contains("UTF-8"), "{err}");
        assert!(!err.contains(&encoded), "{err}");
    }

    #[test]
    fn malformed_structure_errors_do_not_quote_values() {
        for json in [
            // An entry that is a bare string instead of an object.
            format!(r#"{{"auths": {{"quay.io": "{SECRET}"}}}}"#),
            format!(r#"{{"auths": {{"quay.io": {{"auth": ["{SECRET}"]}}}}}}"#),
            format!(r#"{{"auths": "{SECRET}"}}"#),
            format!(r#"["{SECRET}"]"#),
            // Syntax errors next to a secret.
            format!(r#"{{"auths": {{"quay.io": {{"auth": "{SECRET}" "#),
            format!(r#"{{"auths": {{"quay.io": {{"auth": "{SECRET}" x}}}}}}"#),
            format!(r#"{{"auths": {{"quay.io": {{"auth": {SECRET}}}}}}}"#),
            format!("{{\"auths\": {{\"quay.io\": {{\"auth\": \"{SECRET}\u{1}\"}}}}}}"),
        ] {
            let err = parse_err(&json);
            assert!(err.contains("/etc/auth.json"), "{err}");
            assert!(!err.contains(SECRET), "{json} → {err}");
        }
        let err = parse_err(r#"{"auths": {"quay.io": {"auth": 5}}}"#);
        assert!(
            err.contains("quay.io") && err.contains("not a string"),
            "{err}"
        );
    }

    #[test]
    fn credentials_for_reads_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let json = serde_json::json!({ "auths": { "quay.io": { "auth": b64("u:p") } } });
        fs::write(&path, json.to_string()).unwrap();
        assert_eq!(
            credentials_for(&path, "quay.io", "fedora/fedora-coreos").unwrap(),
            creds("u", "p")
        );
        assert_eq!(credentials_for(&path, "ghcr.io", "a").unwrap(), None);

        let missing = dir.path().join("missing.json");
        let err = format!(
            "{:#}",
            credentials_for(&missing, "quay.io", "a").unwrap_err()
        );
        assert!(err.contains(&missing.display().to_string()), "{err}");

        fs::write(
            &path,
            format!(r#"{{"auths": {{"quay.io": {{"auth": "{SECRET}!"}}}}}}"#),
        )
        .unwrap();
        let err = format!("{:#}", credentials_for(&path, "quay.io", "a").unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains(SECRET), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let c = Credentials {
            username: "robot".into(),
            password: SECRET.into(),
        };
        let shown = format!("{c:?} {c:#?}");
        assert!(
            shown.contains("robot") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!shown.contains(SECRET), "{shown}");

        let file = auth_file(&[("quay.io", &format!("robot:{SECRET}"))]);
        let shown = format!("{file:?} {file:#?}");
        assert!(shown.contains("quay.io"), "{shown}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(!shown.contains(&b64(&format!("robot:{SECRET}"))), "{shown}");
    }
}
