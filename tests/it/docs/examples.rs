//! Every command block of the docs runs: each ```sh, ```bash or ```console block of
//! the README, POLICIES.md and docs/*.md holding a `pushgate` command line is run by
//! bash, in a fresh sample cosa workdir, against a fresh registry of its own, so a
//! false example fails here.
//!
//! The registry speaks TLS with a test CA, trusted through certs.d
//! (`PUSHGATE_CERTS_D`), as quay.io is trusted through the system's roots: the docs'
//! command lines need no flag the pipeline would not give. What is adapted, by
//! substitution, and nothing else:
//!
//! * `quay.io`, `registry.example.com` and `localhost:5000` become the registry;
//! * `policies/target/…` becomes this checkout's built policies;
//! * the placeholders `sha256:0a1b…` and `sha256:2c3d…` become the digests of the
//!   x86_64 and aarch64 images staged as `coreos-assembler/staging:ARCH-0123abc`.
//!
//! And the workdir holds what the docs name: the sample build (every artifact of
//! `examples/release.toml`, the sample generator's `SampleBuild::product`),
//! `release.toml` (the example, as a job keeps it beside `builds/`),
//! `examples/release.toml` (naming this workdir), the push secrets `tmp/push-secret*`
//! (also `$REGISTRY_SECRET`), `tool-amd64.ociarchive` and `tool-arm64/`, and
//! `OLD.wasm` and `NEW.wasm` (the release-tags module). A ```console block's other
//! lines are output the run must print (`…` matches anything).
//!
//! A block preceded by `<!-- not run: why -->` is skipped: it cannot run here (cosa,
//! podman on a release build, a wasm crate built from scratch), and the why says so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pushgate_sample::{
    SampleBuild, SampleImage, write_build, write_oci_archive, write_oci_layout_dir,
};
use tempfile::TempDir;

use super::{documents, root};
use crate::support::tls::{ClientCert, TestPki};
use crate::support::{Registry, policy_module, pushgate, skopeo, skopeo_digest, write_authfile};

const BUILD: &str = "41.20261127.1.0";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
/// The most blocks the docs may leave unrun.
const MOST_NOT_RUN: usize = 6;
/// The longest one block may take (a hung run fails the test, it does not hang it).
const BLOCK_TIMEOUT_SECS: &str = "300";

/// One fenced block of a document.
struct Block {
    /// `FILE:LINE` of its opening fence.
    at: String,
    lang: String,
    /// Its lines, without the fence's indentation.
    text: String,
    /// The why of a `<!-- not run: why -->` right before it.
    not_run: Option<String>,
}

impl Block {
    fn is_command_block(&self) -> bool {
        let pushgate_line = regex::Regex::new(r"(?m)^(\$ )?([A-Z_]+=\S+ )*pushgate ").unwrap();
        matches!(self.lang.as_str(), "sh" | "bash" | "console")
            && pushgate_line.is_match(&self.text)
    }
}

fn blocks(doc: &Path) -> Vec<Block> {
    let md = fs::read_to_string(doc).unwrap();
    let name = doc.strip_prefix(root()).unwrap().display().to_string();
    let mut found = Vec::new();
    let mut last_prose = "";
    let mut lines = md.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let t = line.trim_start();
        let Some(info) = t.strip_prefix("```") else {
            if !t.is_empty() {
                last_prose = t;
            }
            continue;
        };
        let indent = line.len() - t.len();
        let mut text = String::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            text.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
            text.push('\n');
        }
        let not_run = last_prose
            .strip_prefix("<!-- not run:")
            .and_then(|r| r.strip_suffix("-->"))
            .map(|why| why.trim().to_string());
        found.push(Block {
            at: format!("{name}:{}", i + 1),
            lang: info.trim().to_string(),
            text,
            not_run,
        });
        last_prose = "";
    }
    found
}

/// A fresh registry and workdir holding what the docs name.
struct Scene {
    reg: Registry,
    wd: TempDir,
    bin: TempDir,
    certs_d: PathBuf,
    /// (placeholder, what it stands for)
    digests: Vec<(&'static str, String)>,
}

impl Scene {
    fn new(pki: &TestPki, block: &Block) -> Scene {
        let reg = Registry::start_tls(pki);
        let certs_d = pki.certs_d(reg.addr(), ClientCert::Omit);
        let wd = tempfile::Builder::new()
            .prefix("pushgate-doc-")
            .tempdir()
            .unwrap();
        let d = wd.path();
        write_build(d, &SampleBuild::product(BUILD, &ARCHES)).expect("sample build");

        let example = fs::read_to_string(root().join("examples/release.toml")).unwrap();
        let policies = format!("\"{}/policies/", root().display());
        let config = substitute_registry(&example, reg.addr()).replace("\"../policies/", &policies);
        let workdir = "workdir = \"sample\"";
        assert!(
            config.contains(workdir),
            "examples/release.toml says {workdir}"
        );
        assert!(
            config.contains(&policies),
            "examples/release.toml names the shipped policies"
        );
        fs::write(
            d.join("release.toml"),
            config.replace(workdir, "workdir = \".\""),
        )
        .unwrap();
        fs::create_dir(d.join("examples")).unwrap();
        let here = format!("workdir = {:?}", d.display().to_string());
        fs::write(
            d.join("examples/release.toml"),
            config.replace(workdir, &here),
        )
        .unwrap();

        fs::create_dir(d.join("tmp")).unwrap();
        let auth = write_authfile(&d.join("tmp"), reg.addr(), "robot", "secret");
        for name in ["push-secret", "push-secret-oscontainer"] {
            fs::copy(&auth, d.join("tmp").join(name)).unwrap();
        }
        let tool = |arch: &str, variant: Option<&str>| SampleImage {
            oci_arch: arch.to_string(),
            variant: variant.map(String::from),
            layers: 2,
            layer_size: 1024,
            seed: 7,
        };
        write_oci_archive(&d.join("tool-amd64.ociarchive"), &tool("amd64", None)).unwrap();
        write_oci_layout_dir(&d.join("tool-arm64"), &tool("arm64", Some("v8"))).unwrap();
        if block.text.contains("cosign.key") || block.text.contains("cosign.pub") {
            // As `cosign generate-key-pair` and a pipeline's secret hold them.
            crate::sign_interop::write_cosign_keys(d);
        }
        let release_tags = policy_module("release-tags");
        for name in ["OLD.wasm", "NEW.wasm"] {
            fs::copy(&release_tags, d.join(name)).unwrap();
        }

        let mut digests = Vec::new();
        if block.text.contains("coreos-assembler/staging") {
            let cert_dir = pki.cert_dir(ClientCert::Omit);
            for (arch, image, placeholder) in [
                ("x86_64", tool("amd64", None), "sha256:0a1b…"),
                ("aarch64", tool("arm64", Some("v8")), "sha256:2c3d…"),
            ] {
                let archive = d.join(format!("staged-{arch}.ociarchive"));
                write_oci_archive(&archive, &image).unwrap();
                let reference = format!("{}/coreos-assembler/staging:{arch}-0123abc", reg.addr());
                let out = skopeo()
                    .args(["copy", "--quiet", "--dest-cert-dir"])
                    .arg(&cert_dir)
                    .arg(format!("oci-archive:{}", archive.display()))
                    .arg(format!("docker://{reference}"))
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "staging {reference}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                digests.push((placeholder, skopeo_digest(&reference, None).unwrap()));
            }
        }

        let bin = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pushgate"), bin.path().join("pushgate"))
            .unwrap();
        Scene {
            reg,
            wd,
            bin,
            certs_d,
            digests,
        }
    }

    /// `text` as it runs here.
    fn adapt(&self, text: &str) -> String {
        let mut text = substitute_registry(text, self.reg.addr());
        let built = regex::Regex::new(r#"(^|[\s"'=])policies/target/"#).unwrap();
        let policies = format!("${{1}}{}/policies/target/", root().display());
        text = built.replace_all(&text, policies.as_str()).into_owned();
        for (placeholder, digest) in &self.digests {
            text = text.replace(placeholder, digest);
        }
        text
    }

    /// bash running `script` in the workdir, with pushgate on the PATH and the clean
    /// environment of the other tests.
    fn bash(&self, script: &str) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.args([BLOCK_TIMEOUT_SECS, "bash", "-c"])
            .arg(format!("set -euo pipefail\n{script}"))
            .current_dir(self.wd.path())
            .stdin(Stdio::null());
        for (key, value) in pushgate().get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.bin.path().display()))
            .env("PUSHGATE_CERTS_D", &self.certs_d)
            .env("REGISTRY_SECRET", self.wd.path().join("tmp/push-secret"));
        cmd
    }
}

fn substitute_registry(text: &str, addr: &str) -> String {
    text.replace("quay.io", addr)
        .replace("registry.example.com", addr)
        .replace("localhost:5000", addr)
}

/// Runs `script`; the error says what ran and what it printed.
fn run(scene: &Scene, script: &str) -> Result<String, String> {
    let out = scene.bash(script).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(format!("{stdout}{stderr}"))
    } else {
        Err(format!(
            "{script}\nexit {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status.code()
        ))
    }
}

/// A console block: each `$ ` command (with its `\` continuations) runs, and the
/// lines after it are output it must print.
fn run_console(scene: &Scene, text: &str) -> Result<(), String> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push((cmd.to_string(), Vec::new()));
        } else if let Some((cmd, out)) = steps.last_mut() {
            if continued {
                cmd.push('\n');
                cmd.push_str(line);
            } else if !line.trim().is_empty() {
                out.push(line.trim().to_string());
            }
        }
        continued = line.trim_end().ends_with('\\');
    }
    assert!(
        !steps.is_empty(),
        "a console block without a `$ ` command:\n{text}"
    );
    for (cmd, expected) in steps {
        let printed = run(scene, &cmd)?;
        for want in expected {
            let pattern = format!("^{}$", regex::escape(&want).replace('…', ".*"));
            let re = regex::Regex::new(&pattern).unwrap();
            if !printed.lines().any(|l| re.is_match(l.trim())) {
                return Err(format!(
                    "{cmd}\ndid not print {want:?}; it printed:\n{printed}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_command_block_of_the_docs_runs_against_a_real_registry() {
    let all: Vec<Block> = documents().iter().flat_map(|d| blocks(d)).collect();
    let commands: Vec<&Block> = all.iter().filter(|b| b.is_command_block()).collect();
    let not_run: Vec<String> = commands
        .iter()
        .filter_map(|b| b.not_run.as_ref().map(|why| format!("{}: {why}", b.at)))
        .collect();
    assert!(
        not_run.len() <= MOST_NOT_RUN,
        "keep the blocks that are not run few:\n{}",
        not_run.join("\n")
    );
    for b in &all {
        if let Some(why) = &b.not_run {
            assert!(!why.is_empty(), "{}: say why it is not run", b.at);
        }
    }
    let pki = TestPki::new();
    let mut ran = 0;
    let mut failed = Vec::new();
    for block in commands.iter().filter(|b| b.not_run.is_none()) {
        let scene = Scene::new(&pki, block);
        let text = scene.adapt(&block.text);
        let result = match block.lang.as_str() {
            "console" => run_console(&scene, &text),
            _ => run(&scene, &text).map(drop),
        };
        ran += 1;
        if let Err(e) = result {
            failed.push(format!("{} ({}):\n{e}", block.at, block.lang));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} blocks failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
    assert!(ran >= 10, "the docs' examples run: {ran} blocks");
}
