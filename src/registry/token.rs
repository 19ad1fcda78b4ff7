//! Auth for one executor: what the registry's first 401 taught (Basic, or
//! Docker token auth with a realm and service), and the tokens fetched per
//! scope (`repository:NAME:pull,push`), reused until they are due for renewal.
//! `insufficient_scope` is answered by one fetch with the wider scope the
//! registry names, once per run. The token request itself is a [`Request`]
//! like any other, sent by the same executor loop (retries, trace, bounds).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, Url};
use serde::Deserialize;

use super::challenge::{self, Challenge};
use super::error::RegistryError;
use super::executor::{Executor, sensitive};
use super::request::{Body, OnLoss, Op, Request, Target};

/// The largest token answer read.
const MAX_TOKEN_BODY: usize = 1024 * 1024;
/// How long a token is trusted when the token server does not say (the spec's
/// default is 60 s).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is trusted, whatever the token server says: a day
/// (no release job runs longer, and a huge `expires_in` must not overflow).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A token is renewed this long before it expires, so none expires in flight.
const TOKEN_MARGIN: Duration = Duration::from_secs(5);

/// How the registry wants to be authenticated, as its first 401 said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Mode {
    #[default]
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Default)]
pub(super) struct AuthState {
    mode: Mode,
    /// scope → (token, renew after)
    tokens: HashMap<String, (String, Instant)>,
    /// Scopes the registry found a fresh token insufficient for: re-fetched
    /// once per run, not once per request.
    insufficient: HashSet<String>,
}

/// The parts of a token answer pushgate reads.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// When a token that lives `expires_in` seconds (as the server said) from
/// `now` is renewed: early enough that none expires in flight, late enough
/// that a short-lived token is used for most of its life, never later than
/// [`MAX_TOKEN_LIFETIME`], and no arithmetic that can overflow.
pub fn renew_at(now: Instant, expires_in: Option<u64>) -> Instant {
    let life = expires_in
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME)
        .min(MAX_TOKEN_LIFETIME);
    let early = life.saturating_sub(TOKEN_MARGIN.min(life / 4));
    now.checked_add(early).unwrap_or(now)
}

impl Executor {
    /// Whether the registry uses token auth (as learnt so far).
    pub(super) fn token_auth(&self) -> bool {
        matches!(
            self.auth.lock().expect("auth state").mode,
            Mode::Bearer { .. }
        )
    }

    /// The Authorization header for `scopes`, if any is known to be needed.
    pub(super) async fn auth_header(
        &self,
        scopes: &[String],
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let mode = self.auth.lock().expect("auth state").mode.clone();
        match mode {
            Mode::Unknown => Ok(None),
            Mode::Basic => Ok(self.basic_header()),
            Mode::Bearer { realm, service } => {
                let token = self
                    .token_for(&realm, service.as_deref(), scopes, None)
                    .await?;
                Ok(sensitive(&format!("Bearer {token}")))
            }
        }
    }

    /// The Basic credentials of this identity, as a header.
    pub(super) fn basic_header(&self) -> Option<HeaderValue> {
        let c = self.creds.as_ref()?;
        let raw = format!("{}:{}", c.username, c.password);
        sensitive(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }

    /// A token for `scopes`: the cached one unless it is due for renewal or
    /// `refused` (the one a 401 just turned down), else a fresh one.
    async fn token_for(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        refused: Option<&str>,
    ) -> Result<String, RegistryError> {
        let _one_at_a_time = self.fetching.lock().await;
        let key = scopes.join(" ");
        let cached = {
            let st = self.auth.lock().expect("auth state");
            st.tokens
                .get(&key)
                .filter(|(t, renew)| Instant::now() < *renew && Some(t.as_str()) != refused)
                .map(|(t, _)| t.clone())
        };
        match cached {
            Some(t) => Ok(t),
            None => self.fetch_token(realm, service, scopes).await,
        }
    }

    /// Learns from a 401 (from the registry's own origin) to a request that
    /// `carried` credentials or not: the challenge, and for Bearer a token for
    /// `scopes` (or the wider scope the challenge names). `false` when there
    /// is nothing more to try, so the 401 stands. Requests in flight together
    /// may all meet the first 401: those sent before the challenge was learnt
    /// just go again with what is known.
    pub(super) async fn learn(
        &self,
        resp: &Response,
        scopes: &[String],
        carried: Option<&str>,
    ) -> Result<bool, RegistryError> {
        let Some(ch) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(challenge::parse)
        else {
            return Ok(false);
        };
        match ch {
            Challenge::Basic => {
                if carried.is_some() || self.creds.is_none() {
                    // The credentials were refused, or there are none.
                    return Ok(false);
                }
                self.auth.lock().expect("auth state").mode = Mode::Basic;
                // Sent again only if the credentials may go there at all.
                Ok(self.basic_header().is_some() && self.may_carry_credentials(resp.url()))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
                error,
            } => {
                {
                    let mut st = self.auth.lock().expect("auth state");
                    st.mode = Mode::Bearer {
                        realm: realm.clone(),
                        service: service.clone(),
                    };
                    // A token too narrow for the request: one more fetch, with
                    // the scope the registry names, for the whole run. If the
                    // token server grants no more, the refusal stands.
                    if carried.is_some()
                        && error.as_deref() == Some("insufficient_scope")
                        && !st.insufficient.insert(scopes.join(" "))
                    {
                        return Ok(false);
                    }
                }
                let mut want: Vec<String> = scopes.to_vec();
                if let Some(s) = scope
                    && !want.contains(&s)
                {
                    want.push(s);
                }
                let refused = carried.and_then(|h| h.strip_prefix("Bearer "));
                self.token_for(&realm, service.as_deref(), &want, refused)
                    .await?;
                // Later requests for `scopes` use the token for `want`.
                let mut st = self.auth.lock().expect("auth state");
                if let Some(entry) = st.tokens.get(&want.join(" ")).cloned() {
                    st.tokens.insert(scopes.join(" "), entry);
                }
                Ok(true)
            }
        }
    }

    /// Makes the executor as it is once the registry's challenge named
    /// `realm` and `token` was fetched for `scopes` (for an hour).
    #[cfg(test)]
    pub(super) fn learnt_token(&self, realm: &str, scopes: &[String], token: &str) {
        let mut st = self.auth.lock().expect("auth state");
        st.mode = Mode::Bearer {
            realm: realm.to_string(),
            service: None,
        };
        st.tokens.insert(
            scopes.join(" "),
            (
                token.to_string(),
                Instant::now() + Duration::from_secs(3600),
            ),
        );
    }

    /// Whether credentials may cross to `url` in clear text or encrypted:
    /// https, a loopback host, or plain HTTP the user asked for.
    fn may_carry_credentials(&self, url: &Url) -> bool {
        url.scheme() == "https"
            || super::client::Origin::of(url).is_loopback()
            || self.plain_asked()
    }

    /// [`Executor::read`] behind a pointer (a token is read while sending, and
    /// an async fn cannot contain itself): a token answer cut in its body is
    /// retried like any read.
    fn read_boxed<'a>(
        &'a self,
        req: &'a Request<'_>,
        max: usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<u8>, RegistryError>> + Send + 'a>,
    > {
        Box::pin(async move { self.read(req, max).await.map(|(_, body)| body) })
    }

    /// GET realm?service=S&scope=... with Basic credentials (or anonymously),
    /// through the executor's loop.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let refused = |reason: String| RegistryError::Token {
            realm: realm.to_string(),
            reason,
        };
        let url = Url::parse(realm).map_err(|e| refused(format!("the realm is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(refused("the realm is not an http(s) URL".into()));
        }
        let mut req = Request {
            op: Op::Token,
            method: Method::GET,
            target: Target::Realm(url),
            query: Vec::new(),
            headers: Vec::new(),
            body: Body::Empty,
            repository: None,
            also_reads: Vec::new(),
            small: true,
            on_loss: OnLoss::Repeat,
        };
        if let Some(s) = service {
            req = req.query("service", s);
        }
        for s in scopes {
            req = req.query("scope", s.clone());
        }
        let body = match self.read_boxed(&req, MAX_TOKEN_BODY).await {
            Ok(body) => body,
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                let who = match &self.creds {
                    Some(c) => format!("the credentials of {}", c.username),
                    None => "anonymous access".to_string(),
                };
                return Err(refused(format!(
                    "it refused {who} (HTTP {}): check the user and password \
                     for this registry in the auth file",
                    e.status().unwrap_or_default()
                )));
            }
            Err(e) => return Err(refused(e.to_string())),
        };
        let t: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| refused(format!("the answer is not a token: {e}")))?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(refused("the answer holds no token".into()));
        }
        // A token that cannot be a header value would be dropped silently.
        if HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
            return Err(refused("the token is not a valid header value".into()));
        }
        let renew = renew_at(Instant::now(), t.expires_in);
        self.auth
            .lock()
            .expect("auth state")
            .tokens
            .insert(scopes.join(" "), (token.clone(), renew));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_clamped_and_never_overflow() {
        let now = Instant::now();
        assert_eq!(
            renew_at(now, Some(u64::MAX)),
            now + MAX_TOKEN_LIFETIME - TOKEN_MARGIN
        );
        assert_eq!(renew_at(now, Some(300)), now + Duration::from_secs(295));
        // A short-lived token is still used for three quarters of its life.
        assert_eq!(renew_at(now, Some(8)), now + Duration::from_secs(6));
        assert_eq!(renew_at(now, Some(0)), now);
        assert_eq!(
            renew_at(now, None),
            now + DEFAULT_TOKEN_LIFETIME - TOKEN_MARGIN
        );
    }
}
