//! Throughput where the link, not the registry, is the limit (issue 26): the
//! registry behind the test proxy adding a round trip ([`RTT`]) to every request
//! and limiting bodies per connection (a long-haul TCP flow) and in total (the
//! worker's uplink). The registry's CPU share over each push is printed: the
//! scenario means something only while the registry is not the bottleneck.
//!
//! Measured: the fresh push against raw curl, the release against its largest
//! container alone, the no-op against one skopeo inspect, the fresh push's wall
//! time by `--jobs`, and a build of many small layers (requests per push against
//! the protocol's minimum, and the wall time against raw curl).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::proxy::{Faults, Proxy};
use super::{
    ARTIFACT, Bench, Build, KEY, MIB, Measured, RELEASE_CONTAINERS, REPO, RTT, Registry,
    ReleaseBuild, Row, Size, TAG, bytes, list, median, min_requests, ms, ratio, request_summary,
    secs, show, target_row, walls,
};

/// `--jobs` values of the table (the bench's own `--jobs` is added).
const JOBS: [usize; 4] = [1, 2, 4, 8];

/// The link of the scenario.
#[derive(Clone, Copy)]
pub(super) struct Link {
    /// Bytes a second of each connection, each way.
    pub(super) per_connection: u64,
    /// Bytes a second of all connections together, each way.
    pub(super) total: u64,
}

impl Link {
    fn faults(&self) -> Faults {
        Faults::none()
            .latency(RTT)
            .bandwidth(Some(self.per_connection), Some(self.total))
    }

    /// The least time `bytes` take through this link on `connections`
    /// connections: what no client can beat.
    fn floor(&self, bytes: u64, connections: usize) -> Duration {
        let rate = (self.per_connection * connections as u64).min(self.total);
        Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64)
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{} ms RTT, {:.0} MiB/s per connection, {:.0} MiB/s in total",
            RTT.as_millis(),
            self.per_connection as f64 / MIB as f64,
            self.total as f64 / MIB as f64
        )
    }
}

/// One push, with what the registry spent on it.
struct Timed {
    wall: Duration,
    registry_cpu: Duration,
}

/// What the WAN scenarios measured.
#[derive(Default)]
pub(super) struct WanResults {
    pub(super) fresh: Vec<Measured>,
    fresh_cpu: Vec<Timed>,
    raw: Vec<Timed>,
    noop: Vec<Measured>,
    skopeo: Vec<Measured>,
    release: Vec<Measured>,
    release_largest: Vec<Measured>,
    /// Fresh push wall times by `--jobs`.
    jobs: BTreeMap<usize, Vec<Duration>>,
    fresh_requests: String,
    /// The many-layers build.
    layers: usize,
    layer_size: u64,
    layers_blobs: usize,
    layers_fresh: Vec<Measured>,
    layers_raw: Vec<Duration>,
    layers_requests: usize,
    layers_min: usize,
    layers_summary: String,
}

/// The registry's CPU time over a wall time, as a share of one core.
fn share(t: &[Timed]) -> String {
    let cpu: Duration = t.iter().map(|t| t.registry_cpu).sum();
    let wall: Duration = t.iter().map(|t| t.wall).sum();
    if wall.is_zero() {
        return "n/a".into();
    }
    format!(
        "{:.0}% of a core",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    )
}

impl Bench {
    /// A fresh registry and the WAN proxy in front of it.
    pub(super) fn wan_registry(&self) -> Result<(Registry, Proxy)> {
        let reg = Registry::start(&self.env)?;
        let proxy = Proxy::start(&reg.addr, self.size.link.faults());
        Ok((reg, proxy))
    }

    /// A fresh push of `build` through the WAN with `--jobs jobs`; the registry's CPU.
    fn wan_push(&self, build: &Build, jobs: usize) -> Result<(Measured, Timed, Registry, Proxy)> {
        build.restore_meta()?;
        let (reg, proxy) = self.wan_registry()?;
        let mut args = self.env.container_args(
            &format!("{}/{REPO}", proxy.addr()),
            ARTIFACT,
            KEY,
            &build.workdir,
            &[],
        );
        set_jobs(&mut args, jobs);
        let cpu0 = reg.cpu();
        let (m, _) = self.env.pushgate(&args, "pushed")?;
        let timed = Timed {
            wall: m.wall,
            registry_cpu: reg.cpu() - cpu0,
        };
        Ok((m, timed, reg, proxy))
    }

    /// Raw curl through the WAN.
    fn wan_raw(&self, build: &Build) -> Result<Timed> {
        let (reg, proxy) = self.wan_registry()?;
        let cpu0 = reg.cpu();
        let wall = build.raw.push_to(&self.env, proxy.addr())?;
        let timed = Timed {
            wall,
            registry_cpu: reg.cpu() - cpu0,
        };
        drop(proxy);
        reg.stop();
        Ok(timed)
    }

    /// The fresh push, no-op, release and `--jobs` table through the WAN.
    pub(super) fn wan(&mut self, build: &Build) -> Result<()> {
        let runs = self.size.runs;
        println!("WAN ({}), {runs} runs", self.size.link.describe());
        let rb = ReleaseBuild::generate(&self.env, &self.size)?;
        // The smoke test keeps the table's two ends: what the code does, at half the cost.
        let mut jobs: Vec<usize> = if self.size.small {
            vec![JOBS[0], JOBS[JOBS.len() - 1]]
        } else {
            JOBS.to_vec()
        };
        if !jobs.contains(&self.env.jobs) {
            jobs.push(self.env.jobs);
            jobs.sort();
        }
        for _ in 0..runs {
            let (m, timed, reg, proxy) = self.wan_push(build, self.env.jobs)?;
            println!(
                "  pushgate {} (registry CPU {})",
                show(&m),
                secs(timed.registry_cpu)
            );
            self.results.wan.fresh_requests = request_summary(&reg.requests());
            self.results.wan.fresh.push(m);
            self.results.wan.fresh_cpu.push(timed);
            let args = self.env.container_args(
                &format!("{}/{REPO}", proxy.addr()),
                ARTIFACT,
                KEY,
                &build.workdir,
                &[],
            );
            let skopeo_args: Vec<OsString> = vec![
                "inspect".into(),
                "--raw".into(),
                "--tls-verify=false".into(),
                format!("docker://{}/{REPO}:{TAG}", proxy.addr()).into(),
            ];
            for _ in 0..self.size.quick_runs.div_ceil(runs) {
                let (m, _) = self.env.pushgate(&args, "up-to-date")?;
                self.results.wan.noop.push(m);
                let m = self.env.measure(Path::new("skopeo"), &skopeo_args)?;
                self.results.wan.skopeo.push(m);
            }
            drop(proxy);
            reg.stop();

            let timed = self.wan_raw(build)?;
            println!(
                "  raw curl {} (registry CPU {})",
                secs(timed.wall),
                secs(timed.registry_cpu)
            );
            self.results.wan.raw.push(timed);

            for &j in &jobs {
                let wall = if j == self.env.jobs {
                    self.results.wan.fresh.last().expect("pushed").wall
                } else {
                    let (m, timed, reg, proxy) = self.wan_push(build, j)?;
                    drop(proxy);
                    reg.stop();
                    self.results.wan.fresh_cpu.push(timed);
                    m.wall
                };
                println!("  --jobs {j}: {}", secs(wall));
                self.results.wan.jobs.entry(j).or_default().push(wall);
            }

            rb.restore()?;
            let (reg, proxy) = self.wan_registry()?;
            let m = self.run_release(&rb, proxy.addr())?;
            println!("  release  {}", show(&m));
            self.results.wan.release.push(m);
            drop(proxy);
            reg.stop();
            rb.restore()?;
            let (reg, proxy) = self.wan_registry()?;
            let (m, _) = self
                .env
                .pushgate(&rb.os_args(&self.env, proxy.addr()), "pushed")?;
            println!("  os alone {}", show(&m));
            self.results.wan.release_largest.push(m);
            drop(proxy);
            reg.stop();
        }
        println!(
            "  registry CPU: {} during pushgate's pushes, {} during raw curl's",
            share(&self.results.wan.fresh_cpu),
            share(&self.results.wan.raw)
        );
        Ok(())
    }

    /// A build of many small layers through the WAN: requests and wall time.
    pub(super) fn many_layers(&mut self) -> Result<()> {
        let (layers, layer_size) = if self.size.small {
            (8, 4 * 1024)
        } else {
            (200, 64 * 1024)
        };
        let runs = self.size.runs;
        println!(
            "many layers: {} arches × {layers} layers × {}, WAN, {runs} runs",
            self.size.arches.len(),
            bytes(layer_size)
        );
        let build = Build::generate_in(
            &self.env,
            "layers-workdir",
            &self.size,
            layers,
            layer_size,
            17,
        )?;
        let w = &mut self.results.wan;
        w.layers = layers;
        w.layer_size = layer_size;
        w.layers_blobs = build.raw.blobs.len();
        w.layers_min = min_requests(build.raw.blobs.len(), build.raw.manifests.len(), 1);
        for _ in 0..runs {
            let (m, _, reg, proxy) = self.wan_push(&build, self.env.jobs)?;
            let requests = reg.requests();
            println!("  pushgate {} ({} requests)", show(&m), requests.len());
            let w = &mut self.results.wan;
            w.layers_requests = requests.len();
            w.layers_summary = request_summary(&requests);
            w.layers_fresh.push(m);
            drop(proxy);
            reg.stop();
            let timed = self.wan_raw(&build)?;
            println!("  raw curl {}", secs(timed.wall));
            self.results.wan.layers_raw.push(timed.wall);
        }
        Ok(())
    }

    pub(super) fn wan_rows(&self) -> (Vec<Row>, Vec<String>, String) {
        let w = &self.results.wan;
        let judged = !self.size.small;
        let mut rows = Vec::new();
        let mut details = Vec::new();
        let mut table = String::new();
        let link = self.size.link.describe();
        if !w.fresh.is_empty() {
            let fresh = median(&walls(&w.fresh));
            let raw = median(&w.raw.iter().map(|t| t.wall).collect::<Vec<_>>());
            rows.push(target_row(
                &format!("WAN: fresh push vs raw curl ({} workers)", self.env.jobs),
                secs(fresh),
                format!("raw {}", secs(raw)),
                ratio(fresh, raw),
                1.0,
                "≤ 1.0",
                judged,
            ));
            let (rel, alone) = (
                median(&walls(&w.release)),
                median(&walls(&w.release_largest)),
            );
            rows.push(target_row(
                "WAN: release of 3 containers vs its largest alone",
                secs(rel),
                format!("largest alone {}", secs(alone)),
                ratio(rel, alone),
                1.2,
                "≤ 1.2",
                judged,
            ));
            let (noop, skopeo) = (median(&walls(&w.noop)), median(&walls(&w.skopeo)));
            rows.push(target_row(
                "WAN: no-op vs one skopeo inspect --raw",
                secs(noop),
                format!("skopeo {}", secs(skopeo)),
                ratio(noop, skopeo),
                1.0,
                "≤ 1",
                judged,
            ));
            details.push(format!(
                "| WAN ({link}): fresh push, pushgate | {} | registry {} | | {} requests |",
                list(&walls(&w.fresh)),
                share(&w.fresh_cpu),
                w.fresh_requests
            ));
            details.push(format!(
                "| WAN: fresh push, raw curl | {} | registry {} | | |",
                list(&w.raw.iter().map(|t| t.wall).collect::<Vec<_>>()),
                share(&w.raw)
            ));
            let (largest, floor) = release_floors(&self.size, self.env.jobs);
            details.push(format!(
                "| WAN: release / largest alone | {} / {} | floor {} / {} | | |",
                list(&walls(&w.release)),
                list(&walls(&w.release_largest)),
                secs(floor),
                secs(largest)
            ));
            details.push(format!(
                "| WAN: no-op / skopeo inspect | {} / {} | | | |",
                list(&walls(&w.noop)),
                list(&walls(&w.skopeo))
            ));
            table.push_str(&format!(
                "\nFresh push of the build through the WAN ({link}) by `--jobs` (medians; throughput of the build's bytes; the floor is the bytes through `--jobs` connections of this link):\n\n| --jobs | wall times | median | throughput | floor |\n|---|---|---|---|---|\n"
            ));
            let build_bytes = self.results.build_bytes;
            for (j, v) in &w.jobs {
                let m = median(v);
                table.push_str(&format!(
                    "| {j} | {} | {} | {:.1} MiB/s | {} |\n",
                    list(v),
                    secs(m),
                    build_bytes as f64 / MIB as f64 / m.as_secs_f64().max(1e-9),
                    secs(self.size.link.floor(build_bytes, *j))
                ));
            }
            if let Some(j) = pick_jobs(&w.jobs) {
                table.push_str(&format!(
                    "\nThe fewest jobs within 5% of the fastest: {j}.\n"
                ));
            }
        }
        if !w.layers_fresh.is_empty() {
            let (fresh, raw) = (median(&walls(&w.layers_fresh)), median(&w.layers_raw));
            let what = format!(
                "many layers ({} arches × {} × {})",
                self.size.arches.len(),
                w.layers,
                bytes(w.layer_size)
            );
            rows.push(target_row(
                &format!("{what}: requests vs the least an idempotent push needs"),
                w.layers_requests.to_string(),
                format!("minimum {}", w.layers_min),
                (w.layers_min > 0).then(|| w.layers_requests as f64 / w.layers_min as f64),
                1.1,
                "≤ 1.1",
                true,
            ));
            rows.push(target_row(
                &format!("{what} at {} ms RTT vs raw curl", RTT.as_millis()),
                secs(fresh),
                format!("raw {}", secs(raw)),
                ratio(fresh, raw),
                1.1,
                "≤ 1.1",
                judged,
            ));
            details.push(format!(
                "| WAN: many layers ({} blobs), pushgate / raw curl | {} / {} | median {:.0} ms / {:.0} ms | | {} requests |",
                w.layers_blobs,
                list(&walls(&w.layers_fresh)),
                list(&w.layers_raw),
                ms(fresh),
                ms(raw),
                w.layers_summary
            ));
        }
        (rows, details, table)
    }
}

/// The least time the release's largest container alone and the release take
/// through the link, each container with `jobs` connections: the largest's
/// bytes through its connections, and no less than all bytes through the
/// connections of all containers (at most the link's total).
fn release_floors(size: &Size, jobs: usize) -> (Duration, Duration) {
    let bytes: Vec<u64> = RELEASE_CONTAINERS
        .iter()
        .map(|(_, _, _, first_arch, quarter)| {
            let arches = if *first_arch { 1 } else { size.arches.len() };
            let layers = if *quarter {
                (size.layers / 4).max(1)
            } else {
                size.layers
            };
            (arches * layers) as u64 * size.layer_size
        })
        .collect();
    let link = size.link;
    let largest = bytes
        .iter()
        .map(|&b| link.floor(b, jobs))
        .max()
        .unwrap_or_default();
    let all = link.floor(bytes.iter().sum(), jobs * bytes.len());
    (largest, largest.max(all))
}

/// The fewest `--jobs` whose median is within 5% of the fastest median.
fn pick_jobs(jobs: &BTreeMap<usize, Vec<Duration>>) -> Option<usize> {
    let best = jobs.values().map(|v| median(v)).min()?;
    jobs.iter()
        .find(|(_, v)| median(v).as_secs_f64() <= best.as_secs_f64() * 1.05)
        .map(|(j, _)| *j)
}

/// Replaces the value of `--jobs` in `args`.
fn set_jobs(args: &mut [OsString], jobs: usize) {
    if let Some(i) = args.iter().position(|a| a == "--jobs") {
        args[i + 1] = jobs.to_string().into();
    }
}
