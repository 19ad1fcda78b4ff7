//! Signed policies against a real `docker-registry`: `policy push` with a key
//! made as cosign makes it signs the artifact where cosign keeps signatures
//! (checked with the Sigstore crate, not pushgate's own code), once;
//! `--require-signed-policies` accepts a module signed by a trusted key and
//! fails, with nothing written, one unsigned or signed by another key; offline,
//! the signature cached beside the module is what is checked (missing or
//! tampered: refused); a release config's `require-signed-policies`. Where the
//! signers are then named (reports, logs, `policy inspect`): [`super::policy_signed_shown`].

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use sigstore::crypto::Signature;

use crate::policy_oci::{self, ARCHES};
use crate::sign_interop::{CosignKeys, cosign_keys, sigstore_verifier};
use crate::support::run::{Run, path_str};
use crate::support::{policy_module, sha256_digest, skopeo_inspect_raw};

/// policy_oci's environment (a cosa workdir, a registry for policies that can
/// be stopped and one for images), with the build key (trusted) and another
/// one (not).
pub(crate) struct Env {
    pub(crate) base: policy_oci::Env,
    pub(crate) build: CosignKeys,
    pub(crate) other: CosignKeys,
}

impl Env {
    pub(crate) fn new() -> Env {
        Env {
            base: policy_oci::Env::new(),
            build: cosign_keys(),
            other: cosign_keys(),
        }
    }

    pub(crate) fn oci(&self, rest: &str) -> String {
        self.base.oci(rest)
    }

    pub(crate) fn repo(&self, name: &str) -> String {
        self.base.images.repo(name)
    }

    /// `pushgate ARGS` with the policy cache `cache` (under the temp dir).
    pub(crate) fn run(&self, args: &[&str], cache: &str) -> Run {
        self.base.run_with_cache(args, cache)
    }

    /// The artifact cache of `cache`.
    pub(crate) fn oci_cache(&self, cache: &str) -> PathBuf {
        self.base
            .dir
            .path()
            .join(cache)
            .join("pushgate")
            .join("oci")
    }

    /// `policy push MODULE REF --json`, signed with `key` if given: the
    /// `published` object.
    pub(crate) fn publish(&self, reference: &str, key: Option<&CosignKeys>) -> Value {
        let module = policy_module("default");
        let mut args = vec![
            "policy".to_string(),
            "push".into(),
            path_str(&module),
            reference.into(),
            "--plain-http".into(),
            "--json".into(),
        ];
        if let Some(k) = key {
            args.extend([
                "--sign-by-sigstore-private-key".into(),
                path_str(&k.key),
                "--sign-passphrase-file".into(),
                path_str(&k.passphrase_file),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = self.run(&args, "publisher");
        assert_eq!(run.code, 0, "{run:?}");
        run.json["published"].clone()
    }

    /// `push` of the build's ostree artifact to `repo` (meta.json key `key`)
    /// with `extra` flags.
    pub(crate) fn push_os(&self, repo: &str, key: &str, extra: &[&str], cache: &str) -> Run {
        let mut args = vec![
            "push",
            "--repo",
            repo,
            "--tag",
            "stable",
            "--artifact",
            "ostree",
            "--metajsonname",
            key,
            "--plain-http",
            "--json",
        ];
        args.extend_from_slice(extra);
        self.run(&args, cache)
    }

    pub(crate) fn trust_build(&self) -> String {
        format!("build={}", path_str(&self.build.public))
    }

    /// Asserts that nothing was written for the container `key` in `repo`.
    pub(crate) fn assert_nothing_written(&self, repo: &str, key: &str, run: &Run) {
        assert_eq!(run.json["uploaded_blobs"], 0, "{run:?}");
        for arch in ARCHES {
            assert!(self.base.meta(arch).get(key).is_none(), "{arch}: {run:?}");
        }
        assert!(
            skopeo_inspect_raw(&format!("{repo}:stable"), None).is_err(),
            "{repo}:stable exists: {run:?}"
        );
    }
}

/// Reads a blob with the library's registry client.
pub(crate) fn blob(repo: &str, digest: &str) -> Vec<u8> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = pushgate::registry::Options {
            plain_http: true,
            ..Default::default()
        };
        let r = pushgate::registry::Repository::new(&repo.parse().unwrap(), &opts).unwrap();
        r.get_blob(&digest.parse().unwrap(), 1 << 20)
            .await
            .unwrap()
            .expect("the blob is there")
    })
}

pub(crate) fn sig_tag(digest: &str) -> String {
    format!("sha256-{}.sig", digest.strip_prefix("sha256:").unwrap())
}

#[test]
fn policy_push_signs_once_as_cosign_does_and_sigstore_verifies_it() {
    let env = Env::new();
    let reference = env.oci("policies/signed:1.0");
    let published = env.publish(&reference, Some(&env.build));
    let digest = published["digest"].as_str().unwrap().to_string();
    let sig = &published["signature"];
    let repo = format!("{}/policies/signed", env.base.policy_addr);
    assert_eq!(sig["identity"], format!("{repo}:1.0"));
    assert_eq!(sig["tag"], sig_tag(&digest));
    assert_eq!(sig["added"], true);

    // what landed at the .sig tag, checked with the Sigstore crate
    let (bytes, manifest) = {
        let b = skopeo_inspect_raw(&format!("{repo}:{}", sig_tag(&digest)), None).unwrap();
        let doc: Value = serde_json::from_slice(&b).unwrap();
        (b, doc)
    };
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = blob(&repo, layers[0]["digest"].as_str().unwrap());
    let signature = layers[0]["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    sigstore_verifier(&env.build.public)
        .verify_signature(Signature::Base64Encoded(signature.as_bytes()), &payload)
        .expect("sigstore verifies the artifact's signature");
    assert!(BASE64.decode(signature).is_ok());
    let payload: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        format!("{repo}:1.0")
    );
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );

    // a re-push with the same key adds no second signature
    let again = env.publish(&reference, Some(&env.build));
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(again["signature"]["added"], false);
    let after = skopeo_inspect_raw(&format!("{repo}:{}", sig_tag(&digest)), None).unwrap();
    assert_eq!(sha256_digest(&after), sha256_digest(&bytes));
    // without a key: unsigned, said as null
    let unsigned = env.publish(&env.oci("policies/unsigned:1.0"), None);
    assert_eq!(unsigned["signature"], Value::Null);
    assert!(
        skopeo_inspect_raw(
            &format!(
                "{}/policies/unsigned:{}",
                env.base.policy_addr,
                sig_tag(&digest)
            ),
            None
        )
        .is_err()
    );
}

#[test]
fn a_signed_policy_is_required_of_registry_modules_and_refused_otherwise() {
    let env = Env::new();
    let signed = env.oci("policies/signed:1.0");
    let unsigned = env.oci("policies/unsigned:1.0");
    let wrong = env.oci("policies/wrong:1.0");
    env.publish(&signed, Some(&env.build));
    env.publish(&unsigned, None);
    env.publish(&wrong, Some(&env.other));
    let trust = env.trust_build();
    let require = ["--require-signed-policies", "--trust-key", trust.as_str()];

    let repo = env.repo("fcos");
    let mut args = vec!["--policy", signed.as_str()];
    args.extend(require);
    let run = env.push_os(&repo, "signed", &args, "consumer");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome(), "pushed", "{run:?}");

    let cases: [(&str, &str, &[&str]); 2] = [
        (&unsigned, "unsigned", &["holds no signature", "build ("]),
        (&wrong, "wrong", &["none of the trusted keys (build)"]),
    ];
    for (reference, key, needles) in cases {
        let repo = env.repo(key);
        let mut args = vec!["--policy", reference];
        args.extend(require);
        let run = env.push_os(&repo, key, &args, "consumer");
        assert_eq!(run.code, 1, "{reference}: {run:?}");
        assert_eq!(run.outcome(), "failed", "{run:?}");
        assert_eq!(run.decided_by(), "host", "{run:?}");
        let reason = run.reason();
        assert!(reason.contains(reference), "{reason}");
        assert!(reason.contains("--require-signed-policies"), "{reason}");
        for n in needles {
            assert!(reason.contains(n), "{n:?} in {reason}");
        }
        env.assert_nothing_written(&repo, key, &run);
        // without the flag the same module decides
        let free = env.push_os(
            &repo,
            key,
            &["--policy", reference, "--dry-run"],
            "consumer",
        );
        assert_eq!(free.code, 0, "{free:?}");
    }

    // policy pull checks it when asked to
    let mut pull = vec!["policy", "pull", signed.as_str(), "--plain-http", "--json"];
    pull.extend(require);
    let run = env.run(&pull, "puller");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.json["signed_by"],
        serde_json::json!(["build"]),
        "{run:?}"
    );
    pull[2] = wrong.as_str();
    let run = env.run(&pull, "puller");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.json["error"]
            .as_str()
            .unwrap()
            .contains("none of the trusted keys (build)"),
        "{run:?}"
    );

    // policy facts refuses it too, as an error naming it
    let mut facts = vec![
        "policy",
        "facts",
        "--repo",
        repo.as_str(),
        "--tag",
        "stable",
        "--artifact",
        "ostree",
        "--metajsonname",
        "signed",
        "--plain-http",
        "--policy",
        unsigned.as_str(),
    ];
    facts.extend(require);
    let run = env.run(&facts, "consumer");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains(unsigned.as_str()), "{run:?}");

    // a module given as a file is not affected
    let file = path_str(&policy_module("default"));
    let mut args = vec!["--policy", file.as_str(), "--dry-run"];
    args.extend(require);
    let run = env.push_os(&env.repo("file"), "file", &args, "consumer");
    assert_eq!(run.code, 0, "{run:?}");

    // the flag without a key to trust is a usage error naming --trust-key
    let run = env.push_os(
        &env.repo("nokey"),
        "nokey",
        &["--policy", &signed, "--require-signed-policies"],
        "consumer",
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.json["usage_error"], true, "{run:?}");
    assert!(run.stderr.contains("--trust-key"), "{run:?}");
}

#[test]
fn offline_the_signature_cached_beside_the_module_is_checked() {
    let mut env = Env::new();
    let published = env.publish(&env.oci("policies/signed:1.0"), Some(&env.build));
    let digest = published["digest"].as_str().unwrap().to_string();
    let pinned = published["pinned"].as_str().unwrap().to_string();
    let trust = env.trust_build();
    let args = [
        "--policy",
        pinned.as_str(),
        "--require-signed-policies",
        "--trust-key",
        trust.as_str(),
        // offline, a stopped registry is not worth retrying
        "--retry-times",
        "0",
    ];
    // pulled once, online, without checking: the module and its signature
    // land in the cache
    let pull = env.run(&["policy", "pull", &pinned, "--plain-http", "--json"], "c");
    assert_eq!(pull.code, 0, "{pull:?}");
    assert_eq!(pull.json["signature_cached"], true, "{pull:?}");
    assert_eq!(pull.json["signed_by"], Value::Null, "{pull:?}");
    let sig_file = pushgate::signed_policy::sig_file(
        &env.oci_cache("c"),
        &format!("{}/policies/signed", env.base.policy_addr),
        &digest.parse().unwrap(),
    );
    let cached = fs::read(&sig_file).expect("the signature is cached beside the module");

    env.base.stop_policy_registry();
    let run = env.push_os(&env.repo("offline"), "offline", &args, "c");
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.outcome(), "pushed", "{run:?}");

    // a tampered signature (another key's, in its place) is refused
    let mut doc: Value = serde_json::from_slice(&cached).unwrap();
    let forged = {
        let key = pushgate::sign::SigningKey::load(
            &env.other.key,
            &pushgate::sign::read_passphrase_file(&env.other.passphrase_file).unwrap(),
        )
        .unwrap();
        let payload = {
            let layer = &doc["layers"][0];
            fs::read(
                env.oci_cache("c").join(
                    layer["digest"]
                        .as_str()
                        .unwrap()
                        .strip_prefix("sha256:")
                        .unwrap(),
                ),
            )
            .unwrap()
        };
        BASE64.encode(key.sign(&payload))
    };
    doc["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] = forged.into();
    fs::write(&sig_file, doc.to_string()).unwrap();
    let refused = |what: &str, needles: &[&str]| {
        let repo = env.repo(what);
        let run = env.push_os(&repo, what, &args, "c");
        assert_eq!(run.code, 1, "{what}: {run:?}");
        assert_eq!(run.outcome(), "failed", "{what}: {run:?}");
        let reason = run.reason();
        assert!(reason.contains(&pinned), "{reason}");
        assert!(
            reason.contains("cannot be read for a fresh one"),
            "{reason}"
        );
        for n in needles {
            assert!(reason.contains(n), "{n:?} in {reason}");
        }
        env.assert_nothing_written(&repo, what, &run);
    };
    refused("tampered", &["none of the trusted keys (build)"]);
    fs::write(&sig_file, b"{not a manifest").unwrap();
    refused("garbled", &["cached signature does not count"]);
    fs::remove_file(&sig_file).unwrap();
    refused("missing", &["the cache holds no signature"]);
}

#[test]
fn a_release_config_requires_signed_policies_of_its_containers() {
    let env = Env::new();
    let signed = env.publish(&env.oci("policies/signed:1.0"), Some(&env.build))["pinned"]
        .as_str()
        .unwrap()
        .to_string();
    let unsigned = env.publish(&env.oci("policies/unsigned:1.0"), None)["pinned"]
        .as_str()
        .unwrap()
        .to_string();
    let (good, bad) = (env.repo("good"), env.repo("bad"));
    let config = |require: &str, keys: &str| {
        let path = env.base.wd().join("release.toml");
        let container = |name: &str, repo: &str, policy: &str| {
            format!(
                "[[container]]\nname = \"{name}\"\nartifact = \"ostree\"\nkey = \"{name}\"\n\
                 repo = \"{repo}\"\ntags = [\"stable\"]\npolicy = \"{policy}\"\n"
            )
        };
        fs::write(
            &path,
            format!(
                "workdir = \".\"\n{require}\n{keys}\n{}{}",
                container("good", &good, &signed),
                container("bad", &bad, &unsigned)
            ),
        )
        .unwrap();
        path
    };
    let keys = format!(
        "[trust-keys]\nbuild = \"{}\"\n",
        path_str(&env.build.public)
    );
    let log = env.base.dir.path().join("decisions.jsonl");
    let release = |path: &Path| {
        env.run(
            &[
                "release",
                "--config",
                &path_str(path),
                "--plain-http",
                "--json",
                "--decision-log",
                &path_str(&log),
            ],
            "consumer",
        )
    };
    let run = release(&config("require-signed-policies = true", &keys));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.release_result("good")["outcome"], "pushed", "{run:?}");
    let failed = run.release_result("bad");
    assert_eq!(failed["outcome"], "failed", "{run:?}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains(&unsigned), "{reason}");
    assert!(reason.contains("holds no signature"), "{reason}");
    assert_eq!(failed["uploaded_blobs"], 0);
    for arch in ARCHES {
        assert!(env.base.meta(arch).get("bad").is_none());
        assert!(env.base.meta(arch).get("good").is_some());
    }
    assert!(skopeo_inspect_raw(&format!("{bad}:stable"), None).is_err());
    let logged: Vec<Value> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bad_line = logged.iter().find(|e| e["container"] == "bad").unwrap();
    assert_eq!(bad_line["outcome"], "failed", "{bad_line}");
    assert!(
        bad_line["reason"].as_str().unwrap().contains(&unsigned),
        "{bad_line}"
    );

    // required, with no key to trust anywhere: an error naming the config and
    // --trust-key, before anything is read
    let path = config("require-signed-policies = true", "");
    let run = release(&path);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.json["usage_error"], false, "{run:?}");
    assert!(run.stderr.contains(&path_str(&path)), "{run:?}");
    assert!(run.stderr.contains("--trust-key"), "{run:?}");
    // and so is the flag: a usage error
    let run = env.run(
        &[
            "release",
            "--config",
            &path_str(&path),
            "--require-signed-policies",
        ],
        "consumer",
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--trust-key"), "{run:?}");
}
