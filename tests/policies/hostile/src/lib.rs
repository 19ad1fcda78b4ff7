//! A test-only policy that misbehaves on request, to show that the host's
//! sandbox and budgets hold. Never ship it.
//!
//! Settings: `{"mode": "..."}`; without a mode it follows the host's verdict.
//!
//! | mode           | what `decide` does                                               |
//! |----------------|------------------------------------------------------------------|
//! | `loop`         | spins forever (fuel / deadline must stop it)                     |
//! | `memory`       | allocates and touches 16 MiB blocks forever (memory limit)       |
//! | `trap`         | executes `unreachable`                                           |
//! | `read-file`    | reads /etc/passwd and lists / and .: push if anything was read,  |
//! |                | else fail("could not read files")                                |
//! | `env`          | push if the environment holds any variable, else                 |
//! |                | fail("no environment")                                           |
//! | `clock`        | push if the wall clock is after 2001-01-01, else                 |
//! |                | fail("clock is fixed")                                           |
//! | `random`       | push or skip by the parity of a hash keyed by std's RandomState  |
//! |                | (seeded from wasi:random); the reason carries the value          |
//! | `counter`      | push on the 1st, 3rd, ... call of an instance, skip on the 2nd,  |
//! |                | 4th, ...: state kept across calls in one instance                |
//! | `bad-settings` | `validate-settings` always returns an error                      |
//! | `echo`         | push with a compact JSON dump of all facts as the reason         |
//! | `sleep`        | sleeps an hour (monotonic subscribe-duration + poll), then skips |
//! |                | with how far the monotonic clock moved ("slept 0ns" when frozen) |
//! | `sleep-until`  | sleeps in steps until the monotonic clock has moved a second     |
//! |                | (never, when frozen: only the deadline stops it)                 |
//! | `panic-in-settings` | `validate-settings` writes to stdout, then panics (the      |
//! |                | panic message goes to stderr)                                    |
//! | `stdout-flood` | writes 16 MiB to stdout and to stderr, then skips("flooded")     |
//! | `huge-reason`  | push with a 64 MiB reason full of terminal escapes               |
//! | `log-flood`    | logs 100000 lines of 100 KiB each, then skips("logged")          |
//! | `escape-reason`| logs, then pushes, text full of control characters               |
//! | `escape-settings` | `validate-settings` rejects with a long reason full of        |
//! |                | control characters                                               |

wit_bindgen::generate!({
    path: "../../../wit",
    world: "policy-module",
});

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exports::pushgate::policy::policy::Guest;
use pushgate::policy::host::{Level, log};
use pushgate::policy::types::{ArchFact, Decision, Facts, PolicyMetadata, TagFact, Verdict};
use serde_json::{Value, json};

const MODES: &[&str] = &[
    "loop",
    "memory",
    "trap",
    "read-file",
    "env",
    "clock",
    "random",
    "counter",
    "bad-settings",
    "echo",
    "sleep",
    "sleep-until",
    "panic-in-settings",
    "stdout-flood",
    "huge-reason",
    "log-flood",
    "escape-reason",
    "escape-settings",
];

/// Text full of terminal escapes and other control characters.
pub const ESCAPES: &str = "\x1b[2J\x1b[31mred\x1b[0m\x07bell\r\nnext\tline\x08\x00end";

struct HostilePolicy;

impl Guest for HostilePolicy {
    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: "hostile".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Test-only: misbehaves on request to exercise the host's sandbox."
                .to_string(),
            settings_help: format!(
                "{{\"mode\": M}} with M one of: {}; without a mode, follows the host's verdict.",
                MODES.join(", ")
            ),
            sample_settings: r#"{"mode": "echo"}"#.to_string(),
        }
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        match mode(&settings)? {
            Some("bad-settings") => Err("hostile: these settings are always rejected".to_string()),
            Some("panic-in-settings") => {
                println!("hostile: about to panic in validate-settings");
                panic!("hostile: panic in validate-settings")
            }
            Some("escape-settings") => Err(format!("{ESCAPES}{}", "y".repeat(100_000))),
            _ => Ok(()),
        }
    }

    fn decide(facts: Facts) -> Decision {
        let mode = match mode(&facts.settings) {
            Ok(mode) => mode,
            Err(err) => return Decision::Fail(format!("invalid settings: {err}")),
        };
        match mode {
            Some("loop") => spin(),
            Some("memory") => hoard(),
            Some("trap") => trap(),
            Some("read-file") => read_files(),
            Some("env") => environment(),
            Some("clock") => clock(),
            Some("random") => random(),
            Some("counter") => counter(),
            Some("echo") => Decision::Push(echo(&facts).to_string()),
            Some("sleep") => sleep(),
            Some("sleep-until") => sleep_until(),
            Some("stdout-flood") => flood_stdio(),
            Some("huge-reason") => Decision::Push(ESCAPES.repeat((64 << 20) / ESCAPES.len())),
            Some("log-flood") => flood_log(),
            Some("escape-reason") => {
                log(Level::Warn, ESCAPES);
                Decision::Push(ESCAPES.to_string())
            }
            _ => follow_host(&facts),
        }
    }
}

export!(HostilePolicy);

/// The mode the settings ask for; `None` when they name none.
fn mode(settings: &str) -> Result<Option<&'static str>, String> {
    let value: Value = serde_json::from_str(settings)
        .map_err(|err| format!("settings are not valid JSON: {err}"))?;
    let Value::Object(object) = value else {
        return Err("settings must be a JSON object".to_string());
    };
    if let Some(key) = object.keys().find(|key| *key != "mode") {
        return Err(format!("unknown setting {key:?}"));
    }
    match object.get("mode") {
        None => Ok(None),
        Some(Value::String(name)) => match MODES.iter().find(|mode| *mode == name) {
            Some(mode) => Ok(Some(mode)),
            None => Err(format!(
                "unknown mode {name:?}; modes: {}",
                MODES.join(", ")
            )),
        },
        Some(other) => Err(format!("\"mode\" must be a string, not {other}")),
    }
}

fn follow_host(facts: &Facts) -> Decision {
    match facts.verdict {
        Verdict::UpToDate => Decision::Skip(facts.verdict_reason.clone()),
        Verdict::RecordOnly | Verdict::Push => Decision::Push(facts.verdict_reason.clone()),
    }
}

fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

fn hoard() -> ! {
    const BLOCK: usize = 16 << 20;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // `vec![1; n]` writes every byte, so each page is really touched.
        blocks.push(black_box(vec![1u8; BLOCK]));
        black_box(&blocks);
    }
}

fn sleep() -> Decision {
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(3600));
    Decision::Skip(format!("slept {}ns", start.elapsed().as_nanos()))
}

fn sleep_until() -> Decision {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(1));
    }
    Decision::Skip("the monotonic clock moved".to_string())
}

fn flood_stdio() -> Decision {
    let line = "hostile flood ".repeat(1 << 10);
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    for _ in 0..(16 << 20) / line.len() {
        // errors (a closed stream) are ignored: the point is to write
        let _ = writeln!(out, "{line}");
        let _ = writeln!(err, "{line}");
    }
    Decision::Skip("flooded".to_string())
}

fn flood_log() -> Decision {
    let line = "l".repeat(100 << 10);
    for _ in 0..100_000 {
        log(Level::Info, &line);
    }
    Decision::Skip("logged".to_string())
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("hostile: trap");
}

fn read_files() -> Decision {
    let mut read = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
        read.push(format!("/etc/passwd ({} bytes)", text.len()));
    }
    for dir in ["/", "."] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            read.push(format!("listed {dir} ({} entries)", entries.count()));
        }
    }
    if read.is_empty() {
        Decision::Fail("could not read files".to_string())
    } else {
        Decision::Push(format!("read {}", read.join(", ")))
    }
}

fn environment() -> Decision {
    let names: Vec<String> = std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    if names.is_empty() {
        Decision::Fail("no environment".to_string())
    } else {
        Decision::Push(format!("environment: {}", names.join(", ")))
    }
}

fn clock() -> Decision {
    // 2001-01-01T00:00:00Z
    let y2001 = UNIX_EPOCH + Duration::from_secs(978_307_200);
    let now = SystemTime::now();
    if now > y2001 {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Decision::Push(format!("real clock: {secs}s since the epoch"))
    } else {
        Decision::Fail("clock is fixed".to_string())
    }
}

fn random() -> Decision {
    // std keys each RandomState from wasi:random once per instance, then
    // bumps the key for every new RandomState. Computing the value once per
    // instance makes it depend on the host's random source only.
    static VALUE: OnceLock<u64> = OnceLock::new();
    let value = *VALUE.get_or_init(|| RandomState::new().hash_one("pushgate"));
    if value.is_multiple_of(2) {
        Decision::Push(format!("random value {value:#018x} is even"))
    } else {
        Decision::Skip(format!("random value {value:#018x} is odd"))
    }
}

fn counter() -> Decision {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    if !call.is_multiple_of(2) {
        Decision::Push(format!("call {call} of this instance"))
    } else {
        Decision::Skip(format!("call {call} of this instance"))
    }
}

/// All facts as JSON, with the contract's field names.
fn echo(facts: &Facts) -> Value {
    let tags: Vec<Value> = facts.tags.iter().map(tag_json).collect();
    let arches: Vec<Value> = facts.arches.iter().map(arch_json).collect();
    json!({
        "container": facts.container,
        "repo": facts.repo,
        "tags": tags,
        "build-id": facts.build_id,
        "key": facts.key,
        "requested-arches": facts.requested_arches,
        "present-arches": facts.present_arches,
        "arches": arches,
        "desired-list-digest": facts.desired_list_digest,
        "verdict": match facts.verdict {
            Verdict::UpToDate => "up-to-date",
            Verdict::RecordOnly => "record-only",
            Verdict::Push => "push",
        },
        "verdict-reason": facts.verdict_reason,
        "force": facts.force,
        "dry-run": facts.dry_run,
        "settings": facts.settings,
    })
}

fn tag_json(tag: &TagFact) -> Value {
    json!({
        "name": tag.name,
        "current": tag.current,
        "is-desired": tag.is_desired,
    })
}

fn arch_json(arch: &ArchFact) -> Value {
    json!({
        "arch": arch.arch,
        "has-key": arch.has_key,
        "recorded-digest": arch.recorded_digest,
        "desired-digest": arch.desired_digest,
        "registry-digest": arch.registry_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(settings: &str) -> Facts {
        Facts {
            container: "os".into(),
            repo: "quay.io/example/os".into(),
            tags: vec![TagFact {
                name: "stable".into(),
                current: None,
                is_desired: false,
            }],
            build_id: None,
            key: Some("base-oscontainer".into()),
            requested_arches: vec!["x86_64".into()],
            present_arches: vec!["x86_64".into()],
            arches: vec![ArchFact {
                arch: "x86_64".into(),
                has_key: false,
                recorded_digest: None,
                desired_digest: Some("sha256:a".into()),
                registry_digest: None,
            }],
            desired_list_digest: Some("sha256:l".into()),
            verdict: Verdict::RecordOnly,
            verdict_reason: "record".into(),
            force: false,
            dry_run: true,
            settings: settings.into(),
        }
    }

    #[test]
    fn settings() {
        assert_eq!(HostilePolicy::validate_settings("{}".into()), Ok(()));
        assert_eq!(
            HostilePolicy::validate_settings(r#"{"mode": "loop"}"#.into()),
            Ok(())
        );
        assert!(HostilePolicy::validate_settings(r#"{"mode": "bad-settings"}"#.into()).is_err());
        assert!(HostilePolicy::validate_settings(r#"{"mode": "nap"}"#.into()).is_err());
        assert!(HostilePolicy::validate_settings(r#"{"other": 1}"#.into()).is_err());
    }

    #[test]
    fn echo_dumps_the_facts() {
        let Decision::Push(reason) = HostilePolicy::decide(facts(r#"{"mode": "echo"}"#)) else {
            panic!("expected push")
        };
        let dump: Value = serde_json::from_str(&reason).unwrap();
        assert_eq!(dump["verdict"], "record-only");
        assert_eq!(dump["build-id"], Value::Null);
        assert_eq!(dump["tags"][0]["is-desired"], false);
        assert_eq!(dump["arches"][0]["desired-digest"], "sha256:a");
        assert_eq!(dump["dry-run"], true);
        assert_eq!(dump["settings"], r#"{"mode": "echo"}"#);
    }

    #[test]
    fn without_a_mode_it_follows_the_host() {
        assert!(matches!(
            HostilePolicy::decide(facts("{}")),
            Decision::Push(r) if r == "record"
        ));
    }
}
