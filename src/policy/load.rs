//! Loading a module: compiled once per content (in memory, and on disk through
//! [`super::cache`]), checked against the contract, and asked for its metadata;
//! from a file, or from bytes fetched from a registry ([`super::remote`]).

use std::path::Path;
use std::sync::Arc;

use super::{
    CONTRACT, CONTRACTS, NOT_WASM, Policy, PolicyError, PolicyHost, PolicyInfo, cache, contracts,
    metadata, remote,
};
use crate::digest::Digest;

impl PolicyHost {
    /// Loads a module: compiles it (once per content), checks it implements the
    /// contract, and reads its metadata.
    pub fn load(&self, path: &Path) -> Result<Arc<Policy>, PolicyError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| PolicyError::Unreadable {
            module: label.clone(),
            reason: e.to_string(),
        })?;
        self.load_bytes(&bytes, path, label, None)
    }

    /// Loads a module fetched from a registry, named by its reference.
    pub fn load_fetched(&self, f: &remote::Fetched) -> Result<Arc<Policy>, PolicyError> {
        let path = f.path.clone().unwrap_or_else(|| f.pinned.clone().into());
        self.load_bytes(&f.module, &path, f.label(), Some(f.pinned.clone()))
    }

    /// Loads module `bytes`, which came from `path` and which errors call
    /// `label`.
    fn load_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        label: String,
        reference: Option<String>,
    ) -> Result<Arc<Policy>, PolicyError> {
        let sha256 = Digest::of(bytes);
        let key = (sha256.clone(), label.clone());
        let compiled = {
            let cache = self.cache.lock().expect("policy cache");
            if let Some(p) = cache.get(&key) {
                return Ok(p.clone());
            }
            // The same content under another name: compiled already.
            cache
                .iter()
                .find(|((d, _), _)| d == &sha256)
                .map(|(_, p)| p.component.clone())
        };
        let invalid = |reason: String| PolicyError::Invalid {
            module: label.clone(),
            reason,
        };
        if !bytes.starts_with(b"\0asm") {
            return Err(invalid(NOT_WASM.into()));
        }
        let component = match compiled {
            Some(c) => c,
            None => cache::compile(&self.engine, bytes, &sha256).map_err(|e| {
                invalid(format!(
                    "{e:#} (a policy must be a component built for wasm32-wasip2)"
                ))
            })?,
        };
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        // The newest version the module exports, should it export several.
        let Some(contract) = CONTRACTS
            .into_iter()
            .find(|c| exports.iter().any(|e| e == c))
        else {
            let reason = match exports
                .iter()
                .find(|e| e.starts_with("pushgate:policy/policy@"))
            {
                Some(other) => format!(
                    "it exports {other} (a newer pushgate may run it; or build the policy \
                     against {CONTRACT})"
                ),
                None => format!("it exports [{}]", exports.join(", ")),
            };
            return Err(PolicyError::Contract {
                module: label,
                reason,
            });
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("it needs an import the host does not offer: {e:#}")))?;
        let pre =
            contracts::Pre::new(contract, instance_pre).map_err(|e| PolicyError::Contract {
                module: label.clone(),
                reason: format!("{e:#}"),
            })?;
        let mut policy = Policy {
            info: PolicyInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                settings_help: String::new(),
                sample_settings: String::new(),
                metadata_problems: Vec::new(),
                sha256: sha256.clone(),
                path: path.to_path_buf(),
                size: bytes.len() as u64,
                contract: contract.to_string(),
                imports: component
                    .component_type()
                    .imports(&self.engine)
                    .map(|(name, _)| name.to_string())
                    .collect(),
                reference,
            },
            pre,
            component,
            label,
        };
        let meta = self.call(&policy, "metadata", metadata::call)?.0;
        if meta.name.trim().is_empty() {
            return Err(PolicyError::Contract {
                module: policy.label,
                reason: "its metadata has an empty name".into(),
            });
        }
        policy.info.name = meta.name;
        policy.info.version = meta.version;
        policy.info.description = meta.description;
        policy.info.settings_help = meta.settings_help;
        policy.info.sample_settings = meta.sample_settings;
        policy.info.metadata_problems = meta.problems;
        let policy = Arc::new(policy);
        self.cache
            .lock()
            .expect("policy cache")
            .insert(key, policy.clone());
        Ok(policy)
    }
}
