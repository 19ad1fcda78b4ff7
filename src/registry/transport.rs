//! The transport: how pushgate reaches a registry. Connection settings, the
//! client pool (one client per registry, TLS mode and identity, shared by the
//! containers of a run), credentials for a repository, and the retry of
//! transient failures. Everything about *what* is asked of a registry is in
//! [`super::ops`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::auth;

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct Options {
    pub tls_verify: bool,
    pub authfile: Option<std::path::PathBuf>,
    pub jobs: usize,
    /// Clients already made in this run, to share.
    pub clients: Clients,
}

/// Registry clients shared by the containers of one run, one per registry, TLS
/// mode and identity: connections and tokens are reused across containers, and a
/// client never carries one identity's credentials to another's repositories.
#[derive(Clone, Default)]
pub struct Clients(Arc<Mutex<HashMap<ClientKey, Client>>>);

type ClientKey = (String, bool, Option<String>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "Clients({n})")
    }
}

impl Clients {
    fn get(&self, key: ClientKey, make: impl FnOnce() -> Client) -> Client {
        let mut map = self.0.lock().expect("client pool");
        map.entry(key).or_insert_with(make).clone()
    }
}

/// A client and the credentials to use with it, for one repository.
pub(crate) struct Connection {
    pub client: Client,
    pub auth: RegistryAuth,
}

/// Finds credentials for `repository` on `registry` and the shared client for
/// that registry and identity.
pub(crate) fn connect(registry: &str, repository: &str, opts: &Options) -> Result<Connection> {
    let auth = match auth::find_auth_file(opts.authfile.as_deref())? {
        Some(file) => match auth::credentials_for(&file, registry, repository)? {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        },
        None => RegistryAuth::Anonymous,
    };
    let config = ClientConfig {
        protocol: if opts.tls_verify {
            ClientProtocol::Https
        } else {
            ClientProtocol::Http
        },
        accept_invalid_certificates: !opts.tls_verify,
        // One POST + one streamed PUT per blob: the size is known up front, and
        // chunked PATCHes would buffer a chunk per upload in memory.
        use_monolithic_push: true,
        max_concurrent_upload: opts.jobs.max(1),
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(300)),
        ..ClientConfig::default()
    };
    let identity = match &auth {
        RegistryAuth::Basic(user, _) => Some(user.clone()),
        _ => None,
    };
    let client = opts
        .clients
        .get((registry.to_string(), opts.tls_verify, identity), || {
            Client::new(config)
        });
    Ok(Connection { client, auth })
}

/// Whether an error may go away on its own (connection trouble, 5xx, 429).
pub(crate) fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => r.is_connect() || r.is_timeout() || r.is_request(),
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|c| c.code == OciErrorCode::Toomanyrequests),
        _ => false,
    }
}

/// Runs an idempotent request up to three times, backing off on transient errors.
pub(crate) async fn retry<T, F, Fut>(mut f: F) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = Duration::from_millis(200);
    for _ in 0..2 {
        match f().await {
            Err(e) if is_transient(&e) => {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            other => return other,
        }
    }
    f().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retried() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: String::new(),
            message: String::new(),
        };
        assert!(is_transient(&server(503)));
        assert!(is_transient(&server(429)));
        assert!(!is_transient(&server(401)));
        assert!(!is_transient(&server(404)));
    }
}
