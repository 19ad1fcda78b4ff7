//! Fetching a policy artifact: the manifest by tag or digest (or from the
//! cache), its config and module, each checked against its digest and kept
//! in the cache.

use anyhow::{Context, Result, bail};

use super::{ArtifactConfig, Fetched, OciRef, cache_dir, cached, describe, keep};
use super::{MAX_MODULE, MAX_SMALL};
use crate::digest::Digest;
use crate::policy::{CONTRACTS, runs};
use crate::registry::{self, Repository};

/// A repository handle, made on first need: a cache hit never makes one.
struct Lazy<'a> {
    r: &'a OciRef,
    opts: &'a registry::Options,
    repo: Option<Repository>,
}

impl Lazy<'_> {
    fn get(&mut self) -> Result<&Repository> {
        if self.repo.is_none() {
            self.repo = Some(Repository::new(self.r.repo(), self.opts)?);
        }
        Ok(self.repo.as_ref().expect("just made"))
    }
}

/// Fetches the policy `r` names, verifies it and keeps it in the cache. A
/// reference by digest whose content is cached makes no request at all. Errors
/// name the reference.
pub async fn fetch(r: &OciRef, opts: &registry::Options) -> Result<Fetched> {
    fetch_inner(r, opts)
        .await
        .with_context(|| format!("policy {r}"))
}

async fn fetch_inner(r: &OciRef, opts: &registry::Options) -> Result<Fetched> {
    let dir = cache_dir();
    let mut repo = Lazy {
        r,
        opts,
        repo: None,
    };
    let mut from_cache = true;
    let hit = match (r.digest(), &dir) {
        (Some(d), Some(dir)) => cached(dir, d).map(|b| (d.clone(), b)),
        _ => None,
    };
    let (digest, manifest) = match hit {
        Some(hit) => hit,
        None => {
            from_cache = false;
            let (reference, what) = match (r.digest(), r.tag()) {
                (Some(d), _) => (d.to_string(), "manifest"),
                (None, Some(t)) => (t.to_string(), "tag"),
                (None, None) => ("latest".to_string(), "tag"),
            };
            // Every manifest type, so that an image or an index at the reference
            // is told apart from a missing one ("not a pushgate policy").
            let Some(m) = repo.get()?.get_manifest(&reference).await? else {
                bail!(
                    "the registry has no {what} {reference} in {}: check the reference \
                     (`pushgate policy push` publishes a policy)",
                    r.repo()
                );
            };
            (m.digest, m.bytes)
        }
    };
    let described = describe(&manifest)?;
    let mut blob = async |d: &Digest, max: usize, what: &str| -> Result<Vec<u8>> {
        if let Some(b) = dir.as_deref().and_then(|dir| cached(dir, d)) {
            return Ok(b);
        }
        from_cache = false;
        match repo.get()?.get_blob(d, max).await? {
            Some(b) => Ok(b),
            None => bail!("the registry lacks the artifact's {what} {d}"),
        }
    };
    let config_bytes = blob(&described.config, MAX_SMALL, "config").await?;
    let module = blob(&described.module, MAX_MODULE, "module").await?;
    let config: ArtifactConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
        anyhow::anyhow!("not a pushgate policy: its config is not a policy's config ({e})")
    })?;
    if !runs(&config.contract) {
        bail!(
            "its config says it is built for the contract {:?}, and this pushgate runs {}",
            config.contract,
            CONTRACTS.join(", ")
        );
    }
    if config.module.sha256 != described.module {
        bail!(
            "its config names module {}, its layer is {}",
            config.module.sha256,
            described.module
        );
    }
    // Kept manifest last: the manifest in the cache means the rest is there too.
    let path = dir.as_deref().and_then(|dir| {
        keep(dir, &config_bytes)?;
        let p = keep(dir, &module)?;
        keep(dir, &manifest)?;
        Some(p)
    });
    Ok(Fetched {
        requested: r.clone(),
        pinned: r.pinned(&digest),
        digest,
        described,
        config,
        module,
        path,
        from_cache,
        signed_by: None,
    })
}
