//! Error explanations: a registry failure turned into one line that names the
//! registry and says what happened and what to do about it. The advice is
//! chosen from the operation ([`Op`]) and the error's kind, never from message
//! text. Credentials never appear in them (errors carry statuses, codes and
//! messages, never headers).

use super::error::{ConnectKind, RegistryError, TlsKind};
use super::request::Op;

/// Who was asking, for the explanation of a refusal.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// The user whose credentials were found, if any.
    pub user: Option<String>,
    /// The registry uses token auth (a token server granted what was asked).
    pub token_auth: bool,
    /// How many times a request that fails transiently is sent in all.
    pub attempts: u32,
    /// Requests go over plain HTTP (asked for, or fallen back to).
    pub plain_http: bool,
}

/// A registry error with its explanation: displayed as the explanation alone,
/// and kept as data so that callers can still branch on what happened.
#[derive(Debug)]
pub struct Explained {
    pub message: String,
    pub error: RegistryError,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Explained {}

impl Explained {
    /// The registry error behind `e`, if `e` is an explained registry failure.
    pub fn of(e: &anyhow::Error) -> Option<&RegistryError> {
        e.downcast_ref::<Explained>().map(|x| &x.error)
    }
}

/// Turns a registry error into one that names the registry (`registry`, reached
/// as `--repo name`) and says what to do.
pub(crate) fn explain(
    e: RegistryError,
    registry: &str,
    name: &str,
    who: &Who,
    op: &Op,
) -> anyhow::Error {
    let reg = registry;
    let rights = if op.writes() { "push" } else { "pull" };
    let repo = name.split_once('/').map_or(name, |(_, r)| r);
    let status = match &e {
        RegistryError::Status { status, .. } => Some(*status),
        _ => None,
    };
    let hint = match (&e, status) {
        (_, Some(405)) | (_, Some(400)) | (_, Some(415))
            if e.has_code("UNSUPPORTED") && matches!(op, Op::PutManifest(_)) =>
        {
            "the registry does not accept this manifest media type (UNSUPPORTED): if it \
             only takes Docker schema 2, push with --v2s2"
                .to_string()
        }
        (RegistryError::Token { .. }, _) => String::new(),
        // A TLS server's answer to plain HTTP is a bare 400 (Go's net/http:
        // "client sent an HTTP request to an HTTPS server"), not a registry's
        // JSON error.
        (RegistryError::Status { codes, .. }, Some(400)) if who.plain_http && codes.is_empty() => {
            format!(
                "{reg} answered plain HTTP with a bare 400, as a TLS server does: if it \
                 speaks HTTPS, drop --plain-http (and give --cert-dir, or --tls-verify=false \
                 for a test registry)"
            )
        }
        (_, Some(401 | 403)) if who.user.is_none() => format!(
            "no credentials for {reg} were found and the registry refuses anonymous \
             {rights} access (HTTP {}): give --authfile, or set REGISTRY_AUTH_FILE",
            status.unwrap_or_default()
        ),
        (_, Some(401 | 403)) if who.token_auth || e.has_code("DENIED") => format!(
            "the account {} lacks {rights} rights on {repo} at {reg} (HTTP {}): the \
             credentials are right, the permissions are not",
            who.user.as_deref().unwrap_or_default(),
            status.unwrap_or_default()
        ),
        (_, Some(401)) => "the registry refused the credentials (HTTP 401): \
                           check the entry for this registry in the auth file"
            .to_string(),
        (_, Some(403)) => {
            "access denied (HTTP 403): the credentials lack permission for this repository"
                .to_string()
        }
        (_, Some(405)) => "the registry refuses this operation (HTTP 405): \
                           is it read-only, or in maintenance mode?"
            .to_string(),
        (_, Some(429)) => {
            format!(
                "rate limited (HTTP 429), {}: rerun later; pushgate resumes where it stopped",
                spent(who)
            )
        }
        (_, Some(code)) if code >= 500 => format!(
            "the registry failed (HTTP {code}), {}: rerun when it is healthy; pushgate \
             resumes where it stopped",
            spent(who)
        ),
        (RegistryError::TooLarge { refused, floor }, _) => format!(
            "{reg} (or a proxy in front of it) refuses request bodies this large: \
             {refused} bytes were refused even after halving the chunks down to {floor}; \
             raise the proxy's limit (nginx: client_max_body_size)"
        ),
        (_, Some(413)) => format!(
            "{reg} (or a proxy in front of it) refuses request bodies this large \
             (HTTP 413): give --chunk-size SIZE below its limit"
        ),
        (
            RegistryError::Tls {
                kind: TlsKind::Untrusted,
                ..
            },
            _,
        ) => format!(
            "the certificate of {reg} is not trusted: put its CA in --cert-dir DIR \
             (as DIR/ca.crt) or in certs.d ({reg}/ca.crt under $PUSHGATE_CERTS_D, \
             ~/.config/containers/certs.d or /etc/containers/certs.d), or, for a test \
             registry, give --tls-verify=false"
        ),
        (
            RegistryError::Tls {
                kind: TlsKind::NotTls,
                ..
            },
            _,
        ) => format!(
            "{reg} does not speak TLS (it answered in plain HTTP): give --plain-http, \
             or --tls-verify=false to try HTTPS first and fall back"
        ),
        (
            RegistryError::Connection {
                kind: ConnectKind::UnknownHost,
                ..
            },
            _,
        ) => format!("the name {reg} does not resolve: check the registry address in --repo"),
        (RegistryError::Connection { kind, .. }, _) => match kind {
            ConnectKind::Refused => format!(
                "cannot connect (nothing listens there), {}: check the registry \
                 address and port in --repo, and that the registry is up",
                spent(who)
            ),
            // It answered before: the address is right, the way there is not.
            ConnectKind::Cut => format!(
                "the connection was cut (reset, or closed mid-answer), {}: something \
                 between here and {reg} (a proxy, a load balancer, the network) drops \
                 connections; rerun, pushgate resumes where it stopped",
                spent(who)
            ),
            ConnectKind::Stalled => format!(
                "no progress for --stall-timeout, {}: the link or the registry is too \
                 slow; rerun, or give a longer --stall-timeout",
                spent(who)
            ),
            ConnectKind::UnknownHost | ConnectKind::Other => format!(
                "cannot connect, {}: check the registry address, that it is up, and \
                 --tls-verify",
                spent(who)
            ),
        },
        _ => String::new(),
    };
    let message = if hint.is_empty() {
        format!("registry {reg} ({name}): {op} failed: {e}")
    } else {
        format!("registry {reg} ({name}): {op} failed: {hint} ({e})")
    };
    anyhow::Error::new(Explained { message, error: e })
}

/// "after N attempts", for an error that was retried until the retries ran out.
fn spent(who: &Who) -> String {
    match who.attempts {
        0 | 1 => "with retries off (--retry-times 0)".to_string(),
        n => format!("after {n} attempts"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, codes: &[&str]) -> RegistryError {
        RegistryError::Status {
            status,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            message: String::new(),
            retry_after: None,
        }
    }

    fn d() -> crate::digest::Digest {
        crate::digest::Digest::of(b"")
    }

    fn who(user: Option<&str>, token_auth: bool) -> Who {
        Who {
            user: user.map(str::to_string),
            token_auth,
            attempts: 6,
            plain_http: false,
        }
    }

    #[test]
    fn unsupported_manifest_suggests_v2s2_not_a_read_only_registry() {
        let e = explain(
            status(405, &["UNSUPPORTED"]),
            "r.io",
            "r.io/x",
            &who(Some("u"), false),
            &Op::PutManifest("stable".into()),
        )
        .to_string();
        assert!(e.contains("--v2s2") && !e.contains("read-only"), "{e}");
        let e = explain(
            status(405, &["UNSUPPORTED"]),
            "r.io",
            "r.io/x",
            &who(Some("u"), false),
            &Op::UploadBlob(d()),
        )
        .to_string();
        assert!(e.contains("read-only"), "{e}");
    }

    #[test]
    fn refusals_say_which_of_no_credentials_wrong_credentials_or_rights() {
        let anon = explain(
            status(401, &[]),
            "r.io",
            "r.io/a/b",
            &who(None, true),
            &Op::UploadBlob(d()),
        )
        .to_string();
        assert!(anon.contains("no credentials"), "{anon}");
        let rights = explain(
            status(401, &["UNAUTHORIZED"]),
            "r.io",
            "r.io/a/b",
            &who(Some("reader"), true),
            &Op::UploadBlob(d()),
        )
        .to_string();
        assert!(
            rights.contains("reader lacks push rights on a/b at r.io"),
            "{rights}"
        );
        let pull = explain(
            status(403, &["DENIED"]),
            "r.io",
            "r.io/a/b",
            &who(Some("nobody"), false),
            &Op::ReadTag("t".into()),
        )
        .to_string();
        assert!(pull.contains("lacks pull rights"), "{pull}");
        let wrong = explain(
            status(401, &[]),
            "r.io",
            "r.io/a",
            &who(Some("u"), false),
            &Op::ReadTag("t".into()),
        )
        .to_string();
        assert!(wrong.contains("refused the credentials"), "{wrong}");
    }

    #[test]
    fn spent_retries_say_how_many_attempts_were_made() {
        let e = explain(
            status(503, &[]),
            "r.io",
            "r.io/x",
            &who(None, false),
            &Op::CheckBlob(d()),
        )
        .to_string();
        assert!(
            e.contains("r.io")
                && e.contains("checking blob")
                && e.contains("HTTP 503")
                && e.contains("after 6 attempts"),
            "{e}"
        );
    }

    #[test]
    fn a_413_says_what_was_refused_and_what_to_try() {
        let e = explain(
            RegistryError::TooLarge {
                refused: 131072,
                floor: 65536,
            },
            "r.io",
            "r.io/x",
            &who(None, false),
            &Op::UploadBlob(d()),
        )
        .to_string();
        assert!(
            e.contains("r.io") && e.contains("131072") && e.contains("client_max_body_size"),
            "{e}"
        );
        let e = explain(
            status(413, &[]),
            "r.io",
            "r.io/x",
            &who(None, false),
            &Op::PutManifest("t".into()),
        )
        .to_string();
        assert!(e.contains("--chunk-size"), "{e}");
    }

    #[test]
    fn a_registry_without_tls_or_a_name_that_does_not_resolve_names_the_fix() {
        let e = explain(
            RegistryError::Tls {
                kind: TlsKind::NotTls,
                detail: "corrupt message".into(),
            },
            "127.0.0.1:5000",
            "127.0.0.1:5000/x",
            &who(None, false),
            &Op::ReadTag("t".into()),
        )
        .to_string();
        assert!(
            e.contains("--plain-http") && e.contains("--tls-verify=false"),
            "{e}"
        );
        let e = explain(
            RegistryError::Connection {
                kind: ConnectKind::UnknownHost,
                detail: "dns error".into(),
            },
            "nowhere.invalid",
            "nowhere.invalid/x",
            &who(None, false),
            &Op::ReadTag("t".into()),
        )
        .to_string();
        assert!(
            e.contains("does not resolve") && e.contains("--repo"),
            "{e}"
        );
    }

    #[test]
    fn connection_failures_say_which_kind_and_what_to_do() {
        let explained = |kind| {
            explain(
                RegistryError::Connection {
                    kind,
                    detail: "detail".into(),
                },
                "r.io",
                "r.io/x",
                &who(None, false),
                &Op::ReadTag("t".into()),
            )
            .to_string()
        };
        let e = explained(ConnectKind::Refused);
        assert!(e.contains("nothing listens") && e.contains("--repo"), "{e}");
        let e = explained(ConnectKind::Cut);
        assert!(e.contains("cut") && e.contains("resumes"), "{e}");
        assert!(!e.contains("check the registry address"), "{e}");
        let e = explained(ConnectKind::Stalled);
        assert!(e.contains("--stall-timeout"), "{e}");
        let e = explained(ConnectKind::Other);
        assert!(e.contains("check the registry address"), "{e}");
        for kind in [ConnectKind::Refused, ConnectKind::Cut, ConnectKind::Stalled] {
            let e = explained(kind);
            assert!(
                e.contains("after 6 attempts") && e.contains("(detail)"),
                "{e}"
            );
        }
    }

    #[test]
    fn certificate_problems_name_the_host_and_both_ways_out() {
        let e = explain(
            RegistryError::Tls {
                kind: TlsKind::Untrusted,
                detail: "invalid peer certificate: UnknownIssuer".into(),
            },
            "127.0.0.1:5000",
            "127.0.0.1:5000/x",
            &who(None, false),
            &Op::ReadTag("t".into()),
        )
        .to_string();
        assert!(
            e.contains("certificate of 127.0.0.1:5000")
                && e.contains("--cert-dir")
                && e.contains("certs.d"),
            "{e}"
        );
    }
}
