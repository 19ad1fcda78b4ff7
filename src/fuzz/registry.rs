//! Fuzz targets for what registries and their users write: WWW-Authenticate,
//! Retry-After, error bodies, references and auth files. (Range and chunk
//! sizes, private to their modules, have their targets beside them.)

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Outcome, chain, ensure, run, text};
use crate::registry::challenge::{self, Challenge};
use crate::registry::error::parse_codes;
use crate::registry::reference::{Reference, RepoName};
use crate::registry::retry::{parse_duration, parse_retry_after};

/// A challenge as a registry would write it, quoting every value.
fn render_challenge(c: &Challenge) -> String {
    match c {
        Challenge::Basic => "Basic".to_string(),
        Challenge::Bearer {
            realm,
            service,
            scope,
            error,
        } => {
            let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
            let mut s = format!("Bearer realm=\"{}\"", q(realm));
            for (k, v) in [("service", service), ("scope", scope), ("error", error)] {
                if let Some(v) = v {
                    s.push_str(&format!(",{k}=\"{}\"", q(v)));
                }
            }
            s
        }
    }
}

#[test]
fn fuzz_www_authenticate() {
    let dict: &[&[u8]] = &[
        b"Bearer ",
        b"Basic ",
        b"realm=",
        b"service=",
        b"scope=",
        b"error=",
        b"\"",
        b"\\\"",
        b",",
        b"insufficient_scope",
        b"repository:a/b:pull,push",
    ];
    run("www_authenticate", dict, &|input| {
        let value = text(input);
        let Some(c) = challenge::parse(&value) else {
            return Ok(Outcome::Refused);
        };
        if let Challenge::Bearer { realm, .. } = &c {
            ensure(!realm.is_empty(), || {
                "a Bearer challenge with an empty realm".into()
            })?;
        }
        let again = render_challenge(&c);
        ensure(challenge::parse(&again).as_ref() == Some(&c), || {
            format!(
                "{c:?} rendered as {again:?} parses as {:?}",
                challenge::parse(&again)
            )
        })?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_retry_after() {
    let dict: &[&[u8]] = &[
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Wed, 21 Oct 2099 07:28:00 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"120",
        b"GMT",
    ];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    run("retry_after", dict, &|input| {
        let value = text(input);
        let Some(wait) = parse_retry_after(&value, now) else {
            return Ok(Outcome::Refused);
        };
        if let Ok(secs) = value.trim().parse::<u64>() {
            ensure(wait == Duration::from_secs(secs), || {
                format!("{value:?} seconds waits {wait:?}")
            })?;
        } else {
            // A date: the wait is the time until then, whole seconds, and the
            // same date written back gives the same wait.
            ensure(wait.subsec_nanos() == 0, || {
                format!("{value:?} waits {wait:?}")
            })?;
            if wait > Duration::ZERO {
                let at = httpdate::fmt_http_date(now + wait);
                ensure(parse_retry_after(&at, now) == Some(wait), || {
                    format!("{value:?} waits {wait:?} but {at:?} does not")
                })?;
            }
        }
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_duration_flags() {
    let dict: &[&[u8]] = &[
        b"ms",
        b"s",
        b"m",
        b"h",
        b".",
        b"0.001",
        b"1e3",
        b"99999999999999999999",
    ];
    run("duration", dict, &|input| {
        let s = text(input);
        match parse_duration(&s) {
            Ok(d) => {
                let again = format!("{}ms", d.as_secs_f64() * 1000.0);
                let d2 = parse_duration(&again)
                    .map_err(|e| format!("{s:?} is {d:?}, but {again:?} is refused: {e}"))?;
                // Through f64: exact to a microsecond, or to f64's precision
                // for waits of years.
                let slack = Duration::from_micros(1).max(d.div_f64(1e12));
                ensure(d.abs_diff(d2) <= slack, || {
                    format!("{s:?} is {d:?}, {again:?} is {d2:?}")
                })?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                ensure(e.contains(&format!("{:?}", s.trim())), || {
                    format!("the error for {s:?} does not name it: {e}")
                })?;
                Ok(Outcome::Refused)
            }
        }
    });
}

#[test]
fn fuzz_registry_error_bodies() {
    let dict: &[&[u8]] = &[
        b"{\"errors\":[",
        b"{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"m\",\"detail\":{}}",
        b"\"code\"",
        b"\"message\"",
        b"\"detail\"",
        b"\\u001b[31m",
        b"\\n",
    ];
    run("registry_error", dict, &|body| {
        let (codes, message) = parse_codes(body);
        ensure(codes.len() <= 16, || format!("{} codes kept", codes.len()))?;
        for c in codes.iter().chain([&message]) {
            ensure(!c.chars().any(char::is_control), || {
                format!("control characters kept in {c:?}")
            })?;
        }
        ensure(codes.iter().all(|c| c.chars().count() <= 64), || {
            format!("a code longer than 64 characters: {codes:?}")
        })?;
        ensure(message.chars().count() <= 300, || {
            format!("a message of {} characters", message.chars().count())
        })?;
        if codes.is_empty() {
            return Ok(Outcome::Refused);
        }
        // What was kept is already inert: it survives another trip unchanged.
        let mut errors: Vec<Value> = codes
            .iter()
            .map(|c| serde_json::json!({"code": c, "message": ""}))
            .collect();
        errors[0]["message"] = Value::String(message.clone());
        let again = serde_json::to_vec(&serde_json::json!({ "errors": errors })).unwrap();
        ensure(
            parse_codes(&again) == (codes.clone(), message.clone()),
            || format!("{codes:?} {message:?} changed on a second parse"),
        )?;
        Ok(Outcome::Accepted)
    });
}

#[test]
fn fuzz_references() {
    let dict: &[&[u8]] = &[
        b"quay.io/",
        b"localhost:5000/",
        b"[::1]:5000/",
        b"docker.io/library/",
        b":latest",
        b"@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        b"__",
        b"--",
        b"/",
        b"A",
    ];
    run("reference", dict, &|input| {
        let s = text(input);
        let mut accepted = false;
        match s.parse::<RepoName>() {
            Ok(repo) => {
                accepted = true;
                ensure(repo.to_string() == s, || {
                    format!("{s:?} displays as {repo}")
                })?;
                ensure(!repo.path().is_empty() && repo.path().len() <= 255, || {
                    format!("{s:?}: path {:?}", repo.path())
                })?;
            }
            Err(e) => ensure(chain(&e).contains(&s), || {
                format!("the error for --repo {s:?} does not name it: {e:#}")
            })?,
        }
        match Reference::parse(&s, "--image docker://X") {
            Ok(r) => {
                accepted = true;
                let shown = r.to_string();
                let again = Reference::parse(&shown, "again")
                    .map_err(|e| format!("{s:?} displays as {shown:?}, which fails: {e:#}"))?;
                ensure(again == r, || format!("{s:?} → {shown:?} → {again:?}"))?;
                ensure(
                    r.repo.registry() != "" && !r.repo.registry().contains('/'),
                    || format!("{s:?}: registry {:?}", r.repo.registry()),
                )?;
            }
            Err(e) => ensure(chain(&e).starts_with("--image docker://X"), || {
                format!("the error for {s:?} does not say what it was: {e:#}")
            })?,
        }
        Ok(if accepted {
            Outcome::Accepted
        } else {
            Outcome::Refused
        })
    });
}

/// Every `auth` value of an auth file and what it decodes to: none may appear
/// in an error.
fn secrets(doc: &Value) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    if let Some(Value::Object(auths)) = doc.get("auths") {
        for v in auths.values() {
            if let Some(Value::String(a)) = v.get("auth") {
                out.push(a.trim().to_string());
                let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(a.trim().trim_end_matches('='))
                    .unwrap_or_default();
                let decoded = String::from_utf8_lossy(&decoded).into_owned();
                if let Some((_, pass)) = decoded.split_once(':') {
                    out.push(pass.to_string());
                }
                out.push(decoded);
            }
        }
    }
    out.retain(|s| s.len() >= 6);
    out
}

#[test]
fn fuzz_auth_files() {
    let dict: &[&[u8]] = &[
        b"\"auths\"",
        b"\"auth\"",
        b"\"credHelpers\"",
        b"\"credsStore\"",
        b"\"https://index.docker.io/v1/\"",
        b"dXNlcjpwYXNzd29yZA==",
        b"dXNlcjpwYXNzd29yZA",
        b"bm9jb2xvbg==",
        b"//",
    ];
    let path = Path::new("/run/user/0/containers/auth.json");
    run(
        "auth_file",
        dict,
        &|input| match crate::registry::auth::parse_auth_file(path, input) {
            Ok(file) => {
                ensure(file.lookup("a/b", "c").is_none(), || {
                    "a registry with a '/' found credentials".into()
                })?;
                Ok(Outcome::Accepted)
            }
            Err(e) => {
                let msg = chain(&e);
                ensure(
                    msg.starts_with(&format!("auth file {}", path.display())),
                    || format!("the error does not name the file: {msg}"),
                )?;
                let doc: Value = serde_json::from_slice(input).unwrap_or(Value::Null);
                // What the error names by design, the registry keys, and
                // pushgate's own words may hold a short secret ("user:pass").
                let mut said = msg.replace("\"user:password\"", "");
                if let Some(Value::Object(auths)) = doc.get("auths") {
                    for key in auths.keys() {
                        said = said.replace(&format!("{key:?}"), "");
                    }
                }
                for s in secrets(&doc) {
                    ensure(!said.contains(&s), || {
                        format!("the error shows a secret: {msg}")
                    })?;
                }
                Ok(Outcome::Refused)
            }
        },
    );
}
