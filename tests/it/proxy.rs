//! Self-tests of the fault-injecting proxy (tests/it/support/proxy/), in front of a real
//! registry, with curl and skopeo as clients. Timings are asserted loosely (lower bounds
//! only): the proxy adds delays, it never promises to be fast.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::support::proxy::{
    Action, Decider, Faults, Proxy, ProxyEvent, RetryAfter, Rule, Trip, http_date, rewrite_location,
};
use crate::support::{Registry, sha256_digest, skopeo_inspect_raw};
use pushgate_sample::{SampleImage, write_oci_archive};

/// What one curl run gave.
#[derive(Debug)]
struct Curl {
    /// curl's exit code (0: a complete HTTP exchange, whatever its status).
    exit: i32,
    /// HTTP status, 0 when there was no complete status line.
    status: u16,
    /// Headers and body (`-i`).
    output: String,
    stderr: String,
    elapsed: Duration,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.output.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    fn ok(&self) -> &Self {
        assert_eq!(self.exit, 0, "curl failed: {self:?}");
        self
    }
}

/// Runs curl with `args` (never through an environment proxy); headers are included in
/// the output unless it goes to a file (`-o`).
fn curl(args: &[&str]) -> Curl {
    let start = Instant::now();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"]);
    if !args.contains(&"-o") {
        cmd.arg("-i");
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (output, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: code.trim().parse().unwrap_or(0),
        output: output.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}

/// Uploads `data` as a blob of `repo` through `base` (a proxy or registry URL prefix) with
/// a POST then a PUT `?digest=`; returns the digest.
fn upload_blob(base: &str, repo: &str, data: &[u8], extra: &[&str]) -> String {
    let digest = sha256_digest(data);
    let post = curl(&["-X", "POST", &format!("{base}/v2/{repo}/blobs/uploads/")]);
    assert_eq!(post.ok().status, 202, "{post:?}");
    let location = post.header("Location").expect("Location").to_string();
    let separator = if location.contains('?') { '&' } else { '?' };
    let put_url = format!("{location}{separator}digest={}", digest.replace(':', "%3A"));
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("blob");
    std::fs::write(&body, data).unwrap();
    let mut args = vec!["-X", "PUT", "-H", "Content-Type: application/octet-stream"];
    args.extend_from_slice(extra);
    let data_arg = format!("@{}", body.display());
    args.extend_from_slice(&["--data-binary", &data_arg, &put_url]);
    let put = curl(&args);
    assert_eq!(put.ok().status, 201, "{put:?}");
    assert_eq!(put.header("Docker-Content-Digest"), Some(digest.as_str()));
    digest
}

/// On one raw connection to `addr`: HEAD `path`, then GET /v2/ once the HEAD's head is
/// in. Returns the HEAD's head and everything that came after it, up to the GET's `{}`.
fn head_then_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = Vec::new();
    let mut read_until = |stream: &mut TcpStream, pattern: &[u8]| {
        let mut buf = [0u8; 4096];
        while !received.windows(pattern.len()).any(|w| w == pattern) {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&received));
            received.extend_from_slice(&buf[..n]);
        }
    };
    write!(stream, "HEAD {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    read_until(&mut stream, b"\r\n\r\n");
    write!(stream, "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    read_until(&mut stream, b"\r\n\r\n{}");
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, next) = text.split_once("\r\n\r\n").unwrap();
    (format!("{head}\r\n\r\n"), next.to_string())
}

/// Deterministic pseudo-random bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn faults_of(log: &[ProxyEvent]) -> Vec<Option<Action>> {
    log.iter().map(|e| e.fault.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------------------

/// A request sequence like a push's: some GETs, HEADs, uploads and manifests.
fn sample_requests() -> Vec<(&'static str, String)> {
    (0..300)
        .map(|i| match i % 5 {
            0 => ("GET", "/v2/".to_string()),
            1 => ("HEAD", format!("/v2/r/blobs/sha256:{i:064}")),
            2 => ("POST", "/v2/r/blobs/uploads/".to_string()),
            3 => (
                "PUT",
                format!("/v2/r/blobs/uploads/{i}?digest=sha256%3A{i}"),
            ),
            _ => ("PUT", format!("/v2/r/manifests/t{i}")),
        })
        .collect()
}

fn decide_all(faults: &Faults, requests: &[(&str, String)]) -> Vec<Option<Action>> {
    let mut decider = Decider::new(faults.clone());
    requests
        .iter()
        .map(|(method, target)| decider.decide(method, target))
        .collect()
}

#[test]
fn seeded_mix_is_deterministic() {
    let actions = vec![
        Action::status_retry_after(503, 1),
        Action::status(429),
        Action::ResetBeforeForward,
        Action::ResetAfterUpstream,
    ];
    let requests = sample_requests();
    let mix = |seed| Faults::none().random(seed, 0.1, actions.clone());

    let first = decide_all(&mix(42), &requests);
    assert_eq!(
        first,
        decide_all(&mix(42), &requests),
        "same seed, same faults"
    );
    assert_ne!(
        first,
        decide_all(&mix(43), &requests),
        "another seed, other faults"
    );

    // About 10 % of 300 requests, every action of the mix among them (loose bounds).
    let hit = first.iter().flatten().count();
    assert!((10..=60).contains(&hit), "{hit} faults of 300");
    for action in &actions {
        let n = first.iter().flatten().filter(|a| *a == action).count();
        assert!(n > 0, "{action:?} never drawn: {first:?}");
    }
    assert!(
        decide_all(&mix(42).random(42, 0.0, actions.clone()), &requests)
            .iter()
            .all(Option::is_none)
    );
    assert!(
        decide_all(&mix(42).random(42, 1.0, actions.clone()), &requests)
            .iter()
            .all(Option::is_some)
    );
}

#[test]
fn rules_fire_on_their_nth_match_and_win_over_the_mix() {
    let cut = Action::CutAnswer { bytes: 10 };
    let faults = Faults::none()
        .rule(Rule::nth(2, "PUT", "/manifests/", cut.clone()))
        .rule(Rule::every("post", "/blobs/uploads/", Action::status(503)))
        .random(7, 1.0, vec![Action::Delay(Duration::from_millis(1))]);
    let requests = [
        ("PUT", "/v2/r/manifests/a"),
        ("GET", "/v2/r/manifests/a"),
        ("POST", "/v2/r/blobs/uploads/"),
        ("PUT", "/v2/r/manifests/b"),
        ("PUT", "/v2/r/manifests/c"),
    ];
    let mut decider = Decider::new(faults);
    let got: Vec<_> = requests.iter().map(|(m, t)| decider.decide(m, t)).collect();
    let delay = Some(Action::Delay(Duration::from_millis(1)));
    assert_eq!(
        got,
        vec![
            delay.clone(),
            delay.clone(),
            Some(Action::status(503)),
            Some(cut),
            delay,
        ]
    );
}

#[test]
fn http_dates_and_location_rewrites() {
    let rfc_example = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(http_date(rfc_example), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
    let leap = UNIX_EPOCH + Duration::from_secs(951_825_600); // 2000-02-29 12:00:00
    assert_eq!(http_date(leap), "Tue, 29 Feb 2000 12:00:00 GMT");

    let (up, proxy) = ("127.0.0.1:5000", "127.0.0.1:6000");
    assert_eq!(
        rewrite_location(
            "http://127.0.0.1:5000/v2/r/blobs/uploads/u?_state=x",
            up,
            proxy
        )
        .as_deref(),
        Some("http://127.0.0.1:6000/v2/r/blobs/uploads/u?_state=x")
    );
    assert_eq!(
        rewrite_location("http://127.0.0.1:5000", up, proxy).as_deref(),
        Some("http://127.0.0.1:6000")
    );
    assert_eq!(rewrite_location("/v2/r/blobs/uploads/u", up, proxy), None);
    assert_eq!(
        rewrite_location("http://127.0.0.1:50001/v2/", up, proxy),
        None
    );
    assert_eq!(
        rewrite_location("https://elsewhere.example/x", up, proxy),
        None
    );
}

// ---------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------

#[test]
fn skopeo_copies_an_image_through_the_proxy() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.ociarchive");
    let image = SampleImage {
        oci_arch: "amd64".into(),
        variant: None,
        layers: 2,
        layer_size: 256 * 1024,
        seed: 5,
    };
    let written = write_oci_archive(&archive, &image).unwrap();

    let reference = format!("{}:v1", proxy.repo("through/proxy"));
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{reference}"))
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy through the proxy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let through = skopeo_inspect_raw(&reference, None).expect("inspect through the proxy");
    let served = registry.requests();
    let direct = skopeo_inspect_raw(&format!("{}:v1", registry.repo("through/proxy")), None)
        .expect("inspect directly");
    assert_eq!(through, direct);
    assert_eq!(sha256_digest(&direct), written.manifest_digest.to_string());

    let log = proxy.log();
    assert!(
        log.iter()
            .any(|e| e.method == "PUT" && e.path() == "/v2/through/proxy/manifests/v1"),
        "{log:#?}"
    );
    for event in &log {
        assert_eq!(event.fault, None, "{event:?}");
        assert_eq!(event.error, None, "{event:?}");
        assert!(event.upstream_status.is_some(), "{event:?}");
    }
    // Everything the proxy forwarded reached the registry (and nothing else did).
    let forwarded: Vec<_> = log
        .iter()
        .map(|e| (e.method.clone(), e.path().to_string()))
        .collect();
    let served: Vec<_> = served.into_iter().map(|r| (r.method, r.path)).collect();
    let (mut forwarded_sorted, mut served_sorted) = (forwarded.clone(), served.clone());
    forwarded_sorted.sort();
    served_sorted.sort();
    assert_eq!(forwarded_sorted, served_sorted);
}

#[test]
fn big_bodies_stream_both_ways_with_either_framing_and_keep_alive() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    let base = proxy.url("");
    let big = bytes(8 * 1024 * 1024 + 17, 1);
    let by_length = upload_blob(&base, "big", &big, &[]);
    let chunked = bytes(3 * 1024 * 1024 + 5, 2);
    let by_chunks = upload_blob(
        &base,
        "big",
        &chunked,
        &["-H", "Transfer-Encoding: chunked"],
    );

    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let fetch = curl(&[
        "-o",
        got.to_str().unwrap(),
        &proxy.url(&format!("/v2/big/blobs/{by_length}")),
    ]);
    assert_eq!(fetch.ok().status, 200, "{fetch:?}");
    assert_eq!(sha256_digest(&std::fs::read(&got).unwrap()), by_length);

    // Two requests on one connection: the proxy keeps it alive.
    let before = proxy.connections();
    let both = curl(&[
        "-I",
        &proxy.url(&format!("/v2/big/blobs/{by_length}")),
        &proxy.url(&format!("/v2/big/blobs/{by_chunks}")),
    ]);
    assert!(
        both.ok()
            .output
            .contains(&format!("Docker-Content-Digest: {by_chunks}"))
    );
    assert_eq!(proxy.connections() - before, 1, "{both:?}");
    assert_eq!(proxy.log().len(), 7, "{:#?}", proxy.log());
}

#[test]
fn locations_naming_the_registry_are_rewritten_to_the_proxy() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());

    // The registry builds Location from Host: with the proxy's Host, the proxy's address.
    let post = curl(&["-X", "POST", &proxy.url("/v2/loc/blobs/uploads/")]);
    assert_eq!(post.ok().status, 202, "{post:?}");
    let location = post.header("Location").expect("Location");
    assert!(
        location.starts_with(&proxy.url("/v2/loc/blobs/uploads/")),
        "{location}"
    );

    // With the registry's own Host, the registry names itself; the proxy rewrites that.
    let host = format!("Host: {}", registry.addr());
    let post = curl(&[
        "-X",
        "POST",
        "-H",
        &host,
        &proxy.url("/v2/loc/blobs/uploads/"),
    ]);
    assert_eq!(post.ok().status, 202, "{post:?}");
    let location = post.header("Location").expect("Location");
    assert!(
        location.starts_with(&proxy.url("/v2/loc/blobs/uploads/")),
        "{location}"
    );
    assert!(!location.contains(registry.addr()), "{location}");

    // The rest of the upload follows that Location, through the proxy.
    upload_blob(&proxy.url(""), "loc", b"following the Location\n", &[]);
    let writes = registry.writes();
    assert_eq!(writes.len(), 4, "{writes:?}");
    assert_eq!(writes.last().unwrap().status, 201);
}

// ---------------------------------------------------------------------------------------
// Faults, one by one
// ---------------------------------------------------------------------------------------

#[test]
fn status_answers_are_not_forwarded_and_carry_retry_after() {
    let registry = Registry::start();
    let date = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    let faults = Faults::none()
        .rule(Rule::nth(
            1,
            "GET",
            "/v2/",
            Action::status_retry_after(503, 7),
        ))
        .rule(Rule::every("HEAD", "/blobs/", Action::status(503)))
        .rule(Rule::nth(
            1,
            "POST",
            "/blobs/uploads/",
            Action::Status {
                code: 429,
                retry_after: Some(RetryAfter::Date(date)),
            },
        ));
    let proxy = Proxy::start(registry.addr(), faults);

    let first = curl(&[&proxy.url("/v2/")]);
    assert_eq!(first.ok().status, 503, "{first:?}");
    assert_eq!(first.header("Retry-After"), Some("7"));
    assert!(first.output.contains("UNAVAILABLE"), "{first:?}");
    assert_eq!(
        curl(&[&proxy.url("/v2/")]).ok().status,
        200,
        "the 2nd GET passes"
    );

    // A HEAD gets the head only: what follows on the connection is the next answer.
    let (head, next) = head_then_get(proxy.addr(), "/v2/r/blobs/sha256:0");
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("Content-Length: "), "{head}");
    assert!(
        next.starts_with("HTTP/1.1 200"),
        "after the HEAD's head: {next:?}"
    );

    // A 429 to a request with a body: the body is read away, the connection stays usable.
    let before = proxy.connections();
    let limited = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "some body",
        &proxy.url("/v2/r/blobs/uploads/"),
        "--next",
        "-i",
        "-w",
        "\n%{http_code}",
        &proxy.url("/v2/"),
    ]);
    assert_eq!(
        proxy.connections() - before,
        1,
        "one connection: {limited:?}"
    );
    assert!(
        limited.ok().output.starts_with("HTTP/1.1 429"),
        "{limited:?}"
    );
    assert!(limited.output.contains(&http_date(date)), "{limited:?}");
    assert_eq!(limited.status, 200, "the request after it: {limited:?}");

    assert_eq!(
        registry
            .requests()
            .iter()
            .map(|r| (r.method.as_str(), r.status))
            .collect::<Vec<_>>(),
        vec![("GET", 200), ("GET", 200), ("GET", 200)],
        "neither faulted request reached the registry"
    );
    let log = proxy.log();
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(log[0].upstream_status, None);
    assert_eq!(log[1].upstream_status, Some(200));
    assert_eq!(log[2].fault, Some(Action::status(503)));
    assert!(matches!(
        log[4].fault,
        Some(Action::Status { code: 429, .. })
    ));
}

#[test]
fn reset_before_forward_reaches_nothing() {
    let registry = Registry::start();
    let faults = Faults::none().rule(Rule::nth(
        1,
        "POST",
        "/blobs/uploads/",
        Action::ResetBeforeForward,
    ));
    let proxy = Proxy::start(registry.addr(), faults);
    let reset = curl(&["-X", "POST", &proxy.url("/v2/r/blobs/uploads/")]);
    assert_ne!(reset.exit, 0, "{reset:?}");
    assert_eq!(reset.status, 0, "{reset:?}");
    assert!(registry.writes().is_empty());
    let log = proxy.log();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].fault, Some(Action::ResetBeforeForward));
    assert_eq!(log[0].upstream_status, None);
}

#[test]
fn reset_after_upstream_loses_the_answer_of_a_done_write() {
    let registry = Registry::start();
    let faults = Faults::none().rule(Rule::nth(
        1,
        "PUT",
        "/blobs/uploads/",
        Action::ResetAfterUpstream,
    ));
    let proxy = Proxy::start(registry.addr(), faults);
    let data = b"written, answer lost\n";
    let digest = sha256_digest(data);
    let post = curl(&["-X", "POST", &proxy.url("/v2/r/blobs/uploads/")]);
    let location = post.ok().header("Location").unwrap().to_string();
    let put = curl(&[
        "-X",
        "PUT",
        // Not curl's default form type: the registry would read the body as a form.
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "written, answer lost\n",
        &format!("{location}&digest={}", digest.replace(':', "%3A")),
    ]);
    assert_ne!(put.exit, 0, "{put:?}");
    assert_eq!(put.status, 0, "{put:?}");
    assert!(
        put.stderr.contains("reset") || put.stderr.contains("Empty reply"),
        "{put:?}"
    );

    // The blob is there all the same.
    let head = curl(&["-I", &proxy.url(&format!("/v2/r/blobs/{digest}"))]);
    assert_eq!(head.ok().status, 200);
    let writes = registry.writes();
    assert_eq!(writes.last().map(|w| w.status), Some(201), "{writes:?}");
    let log = proxy.log();
    assert_eq!(log[1].method, "PUT");
    assert_eq!(log[1].upstream_status, Some(201));
    assert_eq!(log[1].fault, Some(Action::ResetAfterUpstream));
}

#[test]
fn cut_answers_stop_in_the_head_or_in_the_body() {
    let registry = Registry::start();
    let data = bytes(4096, 3);
    let digest = upload_blob(&registry.url(""), "r", &data, &[]);
    let blob = format!("/v2/r/blobs/{digest}");
    let faults = Faults::none()
        .rule(Rule::nth(
            1,
            "GET",
            "/blobs/",
            Action::CutAnswer { bytes: 12 },
        ))
        .rule(Rule::nth(
            2,
            "GET",
            "/blobs/",
            Action::CutAnswer { bytes: 1000 },
        ))
        // Bigger than the whole answer: still never whole.
        .rule(Rule::nth(
            3,
            "GET",
            "/blobs/",
            Action::CutAnswer { bytes: 1 << 20 },
        ));
    let proxy = Proxy::start(registry.addr(), faults);

    let in_head = curl(&[&proxy.url(&blob)]);
    assert_ne!(in_head.exit, 0, "{in_head:?}");
    assert_eq!(in_head.status, 0, "{in_head:?}");

    for _ in 0..2 {
        let in_body = curl(&[&proxy.url(&blob)]);
        // 18: partial file, the body ended before its Content-Length.
        assert_eq!(in_body.exit, 18, "{in_body:?}");
        assert_eq!(in_body.status, 200, "{in_body:?}");
    }
    assert_eq!(
        curl(&[&proxy.url(&blob)]).ok().status,
        200,
        "the 4th is whole"
    );

    let log = proxy.log();
    assert_eq!(log.len(), 4);
    assert!(
        log.iter().all(|e| e.upstream_status == Some(200)),
        "{log:#?}"
    );
}

#[test]
fn stalls_hold_the_answer_for_a_while_or_until_the_client_gives_up() {
    let registry = Registry::start();
    let faults = Faults::none()
        .rule(Rule::nth(1, "GET", "/v2/", Action::stall_forever()))
        .rule(Rule::nth(
            2,
            "GET",
            "/v2/",
            Action::Stall(Duration::from_millis(300)),
        ));
    let proxy = Proxy::start(registry.addr(), faults);

    let forever = curl(&["--max-time", "1", &proxy.url("/v2/")]);
    assert_eq!(forever.exit, 28, "curl timed out: {forever:?}");
    assert!(forever.elapsed >= Duration::from_secs(1), "{forever:?}");

    let held = curl(&[&proxy.url("/v2/")]);
    assert_eq!(held.ok().status, 200);
    assert!(held.elapsed >= Duration::from_millis(300), "{held:?}");

    // The registry answered both; the proxy held the answers.
    let log = proxy.log();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter().all(|e| e.upstream_status == Some(200)),
        "{log:#?}"
    );
    assert_eq!(registry.requests().len(), 2);
}

#[test]
fn a_held_request_goes_on_once_released() {
    let registry = Registry::start();
    let proxy = Proxy::start(registry.addr(), Faults::none());
    for (trip, seen_while_held) in [(Trip::BeforeForward, 0), (Trip::AfterUpstream, 1)] {
        let before = registry.requests().len();
        let held = proxy.trip_on(1, "GET", "/v2/", trip);
        let url = proxy.url("/v2/");
        let client = std::thread::spawn(move || curl(&["--max-time", "60", &url]));
        let caught = held.recv_timeout(Duration::from_secs(30)).expect("held");
        assert_eq!(caught.path(), "/v2/");
        assert_eq!(
            registry.requests().len() - before,
            seen_while_held,
            "{trip:?}"
        );
        assert!(!client.is_finished(), "{trip:?}: no answer while held");
        // A release is for what is held then: the second trip holds again.
        proxy.release_held();
        let answer = client.join().unwrap();
        assert_eq!(answer.ok().status, 200, "{trip:?}");
        assert_eq!(registry.requests().len() - before, 1, "{trip:?}");
    }
    assert_eq!(proxy.log().len(), 2);
    assert!(proxy.wait_idle(Duration::from_secs(10)));
}

#[test]
fn delays_and_latency_add_up() {
    let registry = Registry::start();
    let faults = Faults::none()
        .latency(Duration::from_millis(100))
        .rule(Rule::nth(
            2,
            "GET",
            "/v2/",
            Action::Delay(Duration::from_millis(400)),
        ));
    let proxy = Proxy::start(registry.addr(), faults);
    let plain = curl(&[&proxy.url("/v2/")]);
    assert_eq!(plain.ok().status, 200);
    assert!(plain.elapsed >= Duration::from_millis(100), "{plain:?}");
    let delayed = curl(&[&proxy.url("/v2/")]);
    assert_eq!(delayed.ok().status, 200);
    assert!(delayed.elapsed >= Duration::from_millis(500), "{delayed:?}");
    assert_eq!(
        faults_of(&proxy.log()),
        vec![None, Some(Action::Delay(Duration::from_millis(400)))],
        "latency is not a fault"
    );
}

#[test]
fn trickled_bodies_arrive_whole_and_slowly() {
    let registry = Registry::start();
    let data = bytes(16 * 1024, 4);
    let digest = upload_blob(&registry.url(""), "r", &data, &[]);
    let faults = Faults::none().rule(Rule::every(
        "GET",
        "/blobs/",
        Action::Trickle {
            bytes_per_sec: 32 * 1024,
        },
    ));
    let proxy = Proxy::start(registry.addr(), faults);
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let fetch = curl(&[
        "-o",
        got.to_str().unwrap(),
        &proxy.url(&format!("/v2/r/blobs/{digest}")),
    ]);
    assert_eq!(fetch.ok().status, 200);
    assert_eq!(sha256_digest(&std::fs::read(&got).unwrap()), digest);
    // 16 KiB at 32 KiB/s: half a second at least.
    assert!(fetch.elapsed >= Duration::from_millis(450), "{fetch:?}");
}

#[test]
fn the_live_proxy_applies_the_seeded_mix_in_request_order() {
    let registry = Registry::start();
    let faults = Faults::none().random(
        1234,
        0.5,
        vec![Action::status_retry_after(503, 1), Action::status(429)],
    );
    let proxy = Proxy::start(registry.addr(), faults.clone());
    let statuses: Vec<u16> = (0..20)
        .map(|_| curl(&[&proxy.url("/v2/")]).ok().status)
        .collect();

    let mut decider = Decider::new(faults);
    let expected: Vec<u16> = (0..20)
        .map(|_| match decider.decide("GET", "/v2/") {
            Some(Action::Status { code, .. }) => code,
            None => 200,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, expected);
    assert!(statuses.contains(&200) && statuses.iter().any(|s| *s != 200));
    let log = proxy.log();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    // Only the unfaulted requests reached the registry.
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(registry.requests().len(), passed);
}

#[test]
fn an_unreachable_registry_is_a_502_in_the_log() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let proxy = Proxy::start(&format!("127.0.0.1:{port}"), Faults::none());
    let answer = curl(&[&proxy.url("/v2/")]);
    assert_eq!(answer.ok().status, 502);
    let log = proxy.log();
    assert!(
        log[0].error.as_deref().unwrap_or("").contains("connect"),
        "{log:?}"
    );
}

#[test]
fn bandwidth_limits_slow_uploads_and_downloads_per_connection_and_in_total() {
    const MIB: u64 = 1024 * 1024;
    let registry = Registry::start();
    let data = bytes(MIB as usize, 6);

    // Each connection at 1 MiB/s: a 1 MiB upload, then its download, a second each at
    // least (the upload's time includes its POST).
    let proxy = Proxy::start(registry.addr(), Faults::none().bandwidth(Some(MIB), None));
    let start = Instant::now();
    let digest = upload_blob(&proxy.url(""), "r", &data, &[]);
    let upload = start.elapsed();
    assert!(upload >= Duration::from_secs(1), "upload took {upload:?}");
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let fetch = curl(&[
        "-o",
        got.to_str().unwrap(),
        &proxy.url(&format!("/v2/r/blobs/{digest}")),
    ]);
    assert_eq!(fetch.ok().status, 200);
    assert_eq!(sha256_digest(&std::fs::read(&got).unwrap()), digest);
    assert!(fetch.elapsed >= Duration::from_secs(1), "{fetch:?}");

    // No per-connection limit, 1 MiB/s in total: two downloads of 1 MiB side by side
    // share it, two seconds at least for both.
    let proxy = Proxy::start(registry.addr(), Faults::none().bandwidth(None, Some(MIB)));
    let url = proxy.url(&format!("/v2/r/blobs/{digest}"));
    let start = Instant::now();
    let both: Vec<Curl> = std::thread::scope(|s| {
        let downloads: Vec<_> = (0..2)
            .map(|i| {
                let (url, digest, out) = (&url, &digest, dir.path().join(format!("side-{i}")));
                s.spawn(move || {
                    let fetch = curl(&["-o", out.to_str().unwrap(), url]);
                    assert_eq!(&sha256_digest(&std::fs::read(&out).unwrap()), digest);
                    fetch
                })
            })
            .collect();
        downloads.into_iter().map(|d| d.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    for fetch in &both {
        assert_eq!(fetch.ok().status, 200);
    }
    assert!(elapsed >= Duration::from_secs(2), "both took {elapsed:?}");
    assert_eq!(proxy.connections(), 2, "one connection each");
}
