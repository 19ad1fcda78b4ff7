//! The cost of signing (issue 23): a signed fresh push of the build against the
//! unsigned one, and a signed no-op against the unsigned no-op, each pair in the
//! same run on registries started alike; and the signed fresh push against the
//! unsigned one through the WAN of issue 26 (where round trips cost what they
//! cost a release job). The key is made as `cosign
//! generate-key-pair` makes it, by the Sigstore project's crate (a dev-dependency).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::signing_key::ecdsa::{ECDSAKeys, EllipticCurve};

use super::{
    ARTIFACT, Bench, Build, KEY, Measured, REPO, Registry, Row, median, secs, show, target_row,
    walls,
};

/// What the signing scenario measured.
#[derive(Default)]
pub(super) struct SignedResults {
    pub(super) unsigned: Vec<Measured>,
    pub(super) signed: Vec<Measured>,
    pub(super) unsigned_noop: Vec<Measured>,
    pub(super) signed_noop: Vec<Measured>,
    /// Requests of the last signed push and of the last unsigned one.
    pub(super) signed_requests: String,
    pub(super) unsigned_requests: String,
    /// Fresh pushes through the WAN, unsigned and signed.
    pub(super) wan_unsigned: Vec<Measured>,
    pub(super) wan_signed: Vec<Measured>,
}

/// An encrypted cosign key and its passphrase file.
struct CosignKey {
    key: PathBuf,
    passphrase_file: PathBuf,
}

impl CosignKey {
    fn generate(dir: &Path) -> Result<CosignKey> {
        const PASSPHRASE: &[u8] = b"pushgate bench";
        fs::create_dir_all(dir)?;
        let pair = SigStoreKeyPair::ECDSA(
            ECDSAKeys::new(EllipticCurve::P256).context("generating a P-256 key")?,
        );
        let key = dir.join("cosign.key");
        let pem = pair
            .private_key_to_encrypted_pem(PASSPHRASE)
            .context("encrypting the key as cosign does")?;
        fs::write(&key, pem.as_bytes())?;
        let passphrase_file = dir.join("passphrase");
        fs::write(&passphrase_file, [PASSPHRASE, b"\n"].concat())?;
        Ok(CosignKey {
            key,
            passphrase_file,
        })
    }

    fn args(&self) -> Vec<OsString> {
        vec![
            "--sign-by-sigstore-private-key".into(),
            self.key.clone().into(),
            "--sign-passphrase-file".into(),
            self.passphrase_file.clone().into(),
        ]
    }
}

impl Bench {
    /// Per run: the unsigned fresh push then its no-ops, the signed fresh push then
    /// its no-ops, each push to a fresh registry from a meta.json as generated.
    pub(super) fn signed(&mut self, build: &Build) -> Result<()> {
        let runs = self.size.runs;
        println!("signed vs unsigned fresh push and no-op, {runs} runs");
        let key = CosignKey::generate(&self.env.fresh("cosign"))?;
        let noops = self.size.quick_runs.div_ceil(runs);
        for _ in 0..runs {
            for signed in [false, true] {
                build.restore_meta()?;
                let reg = Registry::start(&self.env)?;
                let mut args = self.env.pushgate_args(&reg, &build.workdir, &[]);
                if signed {
                    args.extend(key.args());
                }
                let (m, _) = self.env.pushgate(&args, "pushed")?;
                let requests = super::request_summary(&reg.requests());
                println!(
                    "  {} {}",
                    if signed { "signed  " } else { "unsigned" },
                    show(&m)
                );
                let r = &mut self.results.signed;
                if signed {
                    r.signed.push(m);
                    r.signed_requests = requests;
                } else {
                    r.unsigned.push(m);
                    r.unsigned_requests = requests;
                }
                for _ in 0..noops {
                    let (m, _) = self.env.pushgate(&args, "up-to-date")?;
                    let r = &mut self.results.signed;
                    if signed {
                        &mut r.signed_noop
                    } else {
                        &mut r.unsigned_noop
                    }
                    .push(m);
                }
                reg.stop();
            }
        }
        println!(
            "signed vs unsigned fresh push through the WAN ({}), {runs} runs",
            self.size.link.describe()
        );
        for _ in 0..runs {
            for signed in [false, true] {
                build.restore_meta()?;
                let (reg, proxy) = self.wan_registry()?;
                let mut args = self.env.container_args(
                    &format!("{}/{REPO}", proxy.addr()),
                    ARTIFACT,
                    KEY,
                    &build.workdir,
                    &[],
                );
                if signed {
                    args.extend(key.args());
                }
                let (m, _) = self.env.pushgate(&args, "pushed")?;
                println!(
                    "  WAN {} {}",
                    if signed { "signed  " } else { "unsigned" },
                    show(&m)
                );
                let r = &mut self.results.signed;
                if signed {
                    &mut r.wan_signed
                } else {
                    &mut r.wan_unsigned
                }
                .push(m);
                drop(proxy);
                reg.stop();
            }
        }
        Ok(())
    }

    pub(super) fn signed_rows(&self) -> (Vec<Row>, Vec<String>) {
        let r = &self.results.signed;
        if r.signed.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let judged = !self.size.small;
        let (signed, unsigned) = (median(&walls(&r.signed)), median(&walls(&r.unsigned)));
        let ratio = super::ratio(signed, unsigned);
        let (noop, plain_noop) = (
            median(&walls(&r.signed_noop)),
            median(&walls(&r.unsigned_noop)),
        );
        let (wan_signed, wan_unsigned) = (
            median(&walls(&r.wan_signed)),
            median(&walls(&r.wan_unsigned)),
        );
        let rows = vec![
            target_row(
                "WAN: signed fresh push vs unsigned",
                secs(wan_signed),
                format!("unsigned {}", secs(wan_unsigned)),
                super::ratio(wan_signed, wan_unsigned),
                1.05,
                "≤ 1.05",
                judged,
            ),
            target_row(
                "signed fresh push vs unsigned",
                secs(signed),
                format!("unsigned {}", secs(unsigned)),
                ratio,
                1.05,
                "≤ 1.05",
                judged,
            ),
            Row {
                what: "signed no-op vs unsigned no-op".into(),
                pushgate: secs(noop),
                baseline: format!("unsigned {}", secs(plain_noop)),
                ratio: super::ratio(noop, plain_noop).map_or("n/a".into(), |x| format!("{x:.2}")),
                target: "—".into(),
                verdict: "—".into(),
            },
        ];
        let details = vec![
            format!(
                "| fresh push, signed / unsigned | {} / {} | | | {} / {} requests |",
                super::list(&walls(&r.signed)),
                super::list(&walls(&r.unsigned)),
                r.signed_requests,
                r.unsigned_requests
            ),
            format!(
                "| WAN: fresh push, signed / unsigned | {} / {} | | | |",
                super::list(&walls(&r.wan_signed)),
                super::list(&walls(&r.wan_unsigned)),
            ),
            format!(
                "| no-op, signed / unsigned | {} / {} | | | |",
                super::list(&walls(&r.signed_noop)),
                super::list(&walls(&r.unsigned_noop)),
            ),
        ];
        (rows, details)
    }
}
