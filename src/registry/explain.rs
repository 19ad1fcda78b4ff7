//! Error explanations: a registry failure turned into one line that names the
//! registry and says what to do about it. Credentials never appear in them.

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// Turns a client error into one that names the registry (`registry`, reached as
/// `--repo name`) and says what to do. `anonymous`: no credentials were found.
pub(crate) fn explain(
    e: OciDistributionError,
    registry: &str,
    name: &str,
    anonymous: bool,
    doing: &str,
) -> anyhow::Error {
    let reg = registry;
    let has_codes = |codes: &[OciErrorCode]| match &e {
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|c| codes.contains(&c.code))
        }
        _ => false,
    };
    let status = match &e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Some(401),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        _ if has_codes(&[OciErrorCode::Unauthorized]) => Some(401),
        _ if has_codes(&[OciErrorCode::Denied]) => Some(403),
        _ if has_codes(&[OciErrorCode::Unsupported]) => Some(405),
        _ => None,
    };
    // UNSUPPORTED on a manifest PUT is about what was sent (a media type the
    // registry does not take), not about the registry being read-only.
    let unsupported_manifest =
        has_codes(&[OciErrorCode::Unsupported]) && doing.starts_with("putting manifest");
    let hint = match status {
        Some(405) if unsupported_manifest => "the registry does not accept this manifest \
                          media type (UNSUPPORTED): if it only takes Docker schema 2, \
                          push with --v2s2"
            .to_string(),
        Some(401) if anonymous => format!(
            "no credentials for {reg} were found and the registry refuses anonymous \
                 access (HTTP 401): give --authfile, or set REGISTRY_AUTH_FILE"
        ),
        Some(401) => "the registry refused the credentials (HTTP 401): \
                          check the entry for this registry in the auth file"
            .to_string(),
        Some(403) => {
            "access denied (HTTP 403): the credentials lack permission for this repository"
                .to_string()
        }
        Some(405) => "the registry refuses this operation (HTTP 405): \
                          is it read-only, or in maintenance mode?"
            .to_string(),
        Some(429) => {
            "rate limited (HTTP 429): rerun later; pushgate resumes where it stopped".to_string()
        }
        Some(code) if code >= 500 => format!(
            "the registry failed (HTTP {code}); rerun when it is healthy: \
                 pushgate resumes where it stopped"
        ),
        _ => match &e {
            OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
                "cannot connect: check the registry address, that it is up, and --tls-verify"
                    .to_string()
            }
            _ => String::new(),
        },
    };
    let msg = if hint.is_empty() {
        format!("registry {reg} ({}): {doing} failed: {e}", name)
    } else {
        format!("registry {reg} ({}): {doing} failed: {hint} ({e})", name)
    };
    anyhow::anyhow!(msg)
}

#[cfg(test)]
mod tests {
    use oci_client::errors::{OciEnvelope, OciError};

    use super::*;

    fn refused(code: OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: String::new(),
        }
    }

    #[test]
    fn unsupported_manifest_suggests_v2s2_not_a_read_only_registry() {
        let e = explain(
            refused(OciErrorCode::Unsupported),
            "r.io",
            "r.io/x",
            false,
            "putting manifest stable",
        )
        .to_string();
        assert!(e.contains("--v2s2") && !e.contains("read-only"), "{e}");
        let e = explain(
            refused(OciErrorCode::Unsupported),
            "r.io",
            "r.io/x",
            false,
            "uploading blob sha256:00",
        )
        .to_string();
        assert!(e.contains("read-only"), "{e}");
    }

    #[test]
    fn denied_names_the_registry_and_repository() {
        let e = explain(
            refused(OciErrorCode::Denied),
            "r.io",
            "r.io/x",
            false,
            "putting manifest t",
        )
        .to_string();
        assert!(e.contains("r.io") && e.contains("HTTP 403"), "{e}");
    }
}
