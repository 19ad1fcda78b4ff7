//! Where TLS trust for a registry comes from, the way podman and skopeo find it:
//! `--cert-dir DIR`, else the containers `certs.d` convention (`HOST:PORT/` under
//! `$PUSHGATE_CERTS_D` when set, else `~/.config/containers/certs.d`,
//! `/etc/containers/certs.d`, `/etc/docker/certs.d`: the first that has the
//! host). In such a directory `*.crt` files are CAs trusted beside the system's,
//! and a `*.cert` with the `*.key` of the same name is the client certificate.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a certificate directory holds, in PEM.
#[derive(Default, Clone)]
pub struct TlsFiles {
    /// The directory they came from, for messages.
    pub dir: Option<PathBuf>,
    pub cas: Vec<Vec<u8>>,
    /// Certificate chain and key, concatenated (what reqwest's identity takes).
    pub client: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key, not even in debug output.
        f.debug_struct("TlsFiles")
            .field("dir", &self.dir)
            .field("cas", &self.cas.len())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// The directory to read for `registry` (`host` or `host:port`).
pub fn cert_dir_for(explicit: Option<&Path>, registry: &str) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_path_buf());
    }
    let roots: Vec<PathBuf> = match std::env::var_os("PUSHGATE_CERTS_D") {
        Some(d) if !d.is_empty() => vec![PathBuf::from(d)],
        _ => {
            let mut v = Vec::new();
            if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                v.push(PathBuf::from(home).join(".config/containers/certs.d"));
            }
            v.push("/etc/containers/certs.d".into());
            v.push("/etc/docker/certs.d".into());
            v
        }
    };
    first_with(&roots, registry)
}

/// The first of the certs.d `roots` with a directory for `registry`.
fn first_with(roots: &[PathBuf], registry: &str) -> Option<PathBuf> {
    // One directory below the root: `.` and `..` pass --repo's host check and
    // would otherwise read the certificates of certs.d itself or its parent.
    let mut parts = Path::new(registry).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) {
        return None;
    }
    roots.iter().map(|r| r.join(registry)).find(|d| d.is_dir())
}

/// Reads `dir`: every `*.crt` as a CA, and a `*.cert` + `*.key` pair as the
/// client identity. A `*.cert` without its key is an error naming both.
pub fn read_dir(dir: &Path) -> Result<TlsFiles> {
    let mut out = TlsFiles {
        dir: Some(dir.to_path_buf()),
        ..TlsFiles::default()
    };
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("--cert-dir {}: cannot read it", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    for path in names {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => out
                .cas
                .push(fs::read(&path).with_context(|| format!("reading CA {}", path.display()))?),
            Some("cert") => {
                let key = path.with_extension("key");
                if !key.exists() {
                    bail!(
                        "client certificate {} has no key {} beside it",
                        path.display(),
                        key.display()
                    );
                }
                let mut pem = fs::read(&path)
                    .with_context(|| format!("reading client certificate {}", path.display()))?;
                pem.push(b'\n');
                pem.extend(
                    fs::read(&key)
                        .with_context(|| format!("reading client key {}", key.display()))?,
                );
                out.client = Some(pem);
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_and_a_client_pair_are_read() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("ca.crt"), "CA").unwrap();
        fs::write(d.path().join("client.cert"), "CERT").unwrap();
        fs::write(d.path().join("client.key"), "KEY").unwrap();
        fs::write(d.path().join("notes.txt"), "x").unwrap();
        let t = read_dir(d.path()).unwrap();
        assert_eq!(t.cas, vec![b"CA".to_vec()]);
        assert_eq!(t.client.as_deref(), Some(&b"CERT\nKEY"[..]));
        assert!(!format!("{t:?}").contains("KEY"));
    }

    #[test]
    fn a_client_cert_without_its_key_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("client.cert"), "CERT").unwrap();
        let e = format!("{:#}", read_dir(d.path()).err().unwrap());
        assert!(e.contains("client.key"), "{e}");
    }

    #[test]
    fn explicit_dir_wins_and_certs_d_is_looked_up_by_host_and_port() {
        assert_eq!(
            cert_dir_for(Some(Path::new("/x")), "r:1"),
            Some(PathBuf::from("/x"))
        );
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let in_b = b.path().join("127.0.0.1:5000");
        fs::create_dir(&in_b).unwrap();
        let roots = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(first_with(&roots, "127.0.0.1:5000"), Some(in_b));
        assert_eq!(first_with(&roots, "127.0.0.1:5001"), None);
    }
}

/// Fuzz targets (see `crate::fuzz`): a registry name that `--repo` accepts
/// finds its certs.d directory inside the root it is looked up under, and a
/// certificate directory of any file names gives exactly its `*.crt` CAs and
/// its `*.cert`/`*.key` pair, or an error naming both.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::fuzz::{Outcome, ensure, run, text};
    use crate::registry::reference::RepoName;

    #[test]
    fn fuzz_certs_d_names() {
        let dict: &[&[u8]] = &[b"..", b".", b":5000", b"[::1]", b"localhost", b"/"];
        let roots = tempfile::tempdir().expect("temp dir");
        let root = roots.path().join("certs.d");
        std::fs::create_dir_all(root.join("quay.io")).expect("certs.d");
        run("certs_d_name", dict, &|input| {
            let registry = text(input);
            let accepted = format!("{registry}/a")
                .parse::<RepoName>()
                .is_ok_and(|r| r.registry() == registry);
            if !accepted {
                return Ok(Outcome::Refused);
            }
            if let Some(dir) = first_with(std::slice::from_ref(&root), &registry) {
                ensure(dir.parent() == Some(root.as_path()), || {
                    format!(
                        "registry {registry:?} reads certificates from {}",
                        dir.display()
                    )
                })?;
            }
            Ok(Outcome::Accepted)
        });
    }

    #[test]
    fn fuzz_cert_dir_files() {
        let dict: &[&[u8]] = &[b".crt", b".cert", b".key", b"\n", b"ca", b"client"];
        run("cert_dir_files", dict, &|input| {
            let d = tempfile::tempdir().expect("temp dir");
            let mut names: Vec<String> = text(input)
                .lines()
                .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains(['/', '\0']))
                .map(str::to_string)
                .collect();
            names.sort();
            names.dedup();
            // Names the file system refuses (too long) are not in the directory.
            names.retain(|n| fs::write(d.path().join(n), n).is_ok());
            let ext = |n: &str| {
                Path::new(n)
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_string)
            };
            let cas = names
                .iter()
                .filter(|n| ext(n).as_deref() == Some("crt"))
                .count();
            match read_dir(d.path()) {
                Ok(t) => {
                    ensure(t.cas.len() == cas, || {
                        format!("{} CAs of {cas}", t.cas.len())
                    })?;
                    let has_cert = names.iter().any(|n| ext(n).as_deref() == Some("cert"));
                    ensure(t.client.is_some() == has_cert, || "the client pair".into())?;
                    ensure(!format!("{t:?}").contains(".key"), || {
                        "a key in Debug".into()
                    })?;
                    Ok(Outcome::Accepted)
                }
                Err(e) => {
                    let msg = format!("{e:#}");
                    // (A `..cert`'s key is `..`, a directory: refused when read.)
                    ensure(msg.contains(&d.path().display().to_string()), || {
                        format!("the error names no file of the directory: {msg}")
                    })?;
                    Ok(Outcome::Refused)
                }
            }
        });
    }
}
