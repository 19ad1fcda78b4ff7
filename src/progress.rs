//! Progress of a long push on a terminal: per arch, the sha256 verification of
//! its archive, then its uploads (blobs, bytes, rate, time left).
//!
//! The work only bumps counters ([`Progress`]). A drawing thread ([`Display`])
//! turns them into a title line and one line per arch, fitted to the terminal's
//! width at every frame, and leaves the last frame on the screen. Nothing is
//! drawn unless stderr is a terminal, nor with `--json` or `--quiet`, so logs and
//! machine-read output stay as they are.
//!
//! indicatif draws (redraws in place, at a bounded rate, and prints [`say`]'s
//! lines above the bars) and estimates rates and time left. The lines are
//! composed here: indicatif's templates cannot give up fields on a narrow
//! terminal, they can only let the line wrap or cut it off.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::human::{self, clock};

/// Whether progress should be drawn: a terminal, and not `--json` or `--quiet`.
pub fn wanted(json: bool, quiet: bool) -> bool {
    !json && !quiet && std::io::stderr().is_terminal()
}

/// What the push as a whole is doing, for the title line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Verifying,
    Checking,
    Uploading,
    Finishing,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Verifying,
            1 => Phase::Checking,
            2 => Phase::Uploading,
            _ => Phase::Finishing,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Phase::Verifying => "verifying archives",
            Phase::Checking => "checking the registry",
            Phase::Uploading => "uploading",
            Phase::Finishing => "putting manifests and tags",
        }
    }
}

/// The counters of one push: a title and one entry per source, in source order.
pub struct Progress {
    title: String,
    phase: AtomicU8,
    arches: Vec<ArchProgress>,
}

/// The counters of one arch (or, until its image is read, one `--image` source).
pub struct ArchProgress {
    label: Mutex<String>,
    /// Bytes of archive to hash; 0 for a layout directory (nothing is verified).
    verify_total: u64,
    verified: AtomicU64,
    upload: OnceLock<Upload>,
    done_blobs: AtomicUsize,
    /// When the last blob was done: the average rate of a finished arch is exact.
    finished: OnceLock<Instant>,
    /// Bytes sent so far (retries count again, so it is capped when shown).
    sent: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Copy)]
struct Upload {
    blobs: usize,
    bytes: u64,
    started: Instant,
}

impl Progress {
    /// `sources` are each source's label (its arch, or a file name until the
    /// arch is known) and how many bytes of archive verifying it reads.
    pub fn new(title: &str, sources: Vec<(String, u64)>) -> Arc<Progress> {
        Arc::new(Progress {
            title: title.to_string(),
            phase: AtomicU8::new(Phase::Verifying as u8),
            arches: sources
                .into_iter()
                .map(|(label, verify_total)| ArchProgress {
                    label: Mutex::new(label),
                    verify_total,
                    verified: AtomicU64::new(0),
                    upload: OnceLock::new(),
                    done_blobs: AtomicUsize::new(0),
                    finished: OnceLock::new(),
                    sent: Arc::new(AtomicU64::new(0)),
                })
                .collect(),
        })
    }

    /// The counters of source number `index`.
    pub fn source(&self, index: usize) -> Option<&ArchProgress> {
        self.arches.get(index)
    }

    /// The counters of `arch` (after [`ArchProgress::relabel`] for `--image` sources).
    pub fn arch(&self, arch: &str) -> Option<&ArchProgress> {
        self.arches.iter().find(|a| a.label().as_str() == arch)
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }
}

impl ArchProgress {
    fn label(&self) -> std::sync::MutexGuard<'_, String> {
        self.label.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Names the source by its arch, once its image has been read.
    pub fn relabel(&self, arch: &str) {
        *self.label() = arch.to_string();
    }

    /// Counts the bytes of the archive read (and hashed) so far.
    pub fn verified(&self) -> &AtomicU64 {
        &self.verified
    }

    /// The upload of `blobs` blobs of `bytes` in all begins (0 when this arch
    /// has nothing missing: it is then done at once).
    pub fn start_upload(&self, blobs: usize, bytes: u64) {
        let now = Instant::now();
        let _ = self.upload.set(Upload {
            blobs,
            bytes,
            started: now,
        });
        if blobs == 0 {
            let _ = self.finished.set(now);
        }
    }

    /// The counter the registry client adds sent bytes to.
    pub fn sent(&self) -> Arc<AtomicU64> {
        self.sent.clone()
    }

    /// One more blob is in the registry.
    pub fn blob_done(&self) {
        let done = self.done_blobs.fetch_add(1, Ordering::Relaxed) + 1;
        if self.upload.get().is_some_and(|u| done >= u.blobs) {
            let _ = self.finished.set(Instant::now());
        }
    }

    /// Where this arch is, as drawn.
    fn snapshot(&self) -> Snapshot {
        let label = self.label().clone();
        if let Some(u) = self.upload.get() {
            let done = self.done_blobs.load(Ordering::Relaxed).min(u.blobs);
            let finished = self.finished.get().copied();
            Snapshot {
                label,
                stage: if finished.is_some() {
                    Stage::Done
                } else {
                    Stage::Uploading
                },
                pos: self.sent.load(Ordering::Relaxed).min(u.bytes),
                len: u.bytes,
                blobs: (done, u.blobs),
                took: finished.map(|f| f.saturating_duration_since(u.started)),
            }
        } else if self.verify_total > 0 {
            let pos = self.verified.load(Ordering::Relaxed).min(self.verify_total);
            Snapshot {
                label,
                stage: if pos < self.verify_total {
                    Stage::Verifying
                } else {
                    Stage::Verified
                },
                pos,
                len: self.verify_total,
                blobs: (0, 0),
                took: None,
            }
        } else {
            Snapshot {
                label,
                stage: Stage::Waiting,
                pos: 0,
                len: 0,
                blobs: (0, 0),
                took: None,
            }
        }
    }
}

/// What an arch is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its archive is being read and hashed.
    Verifying,
    /// Its archive matched meta.json; no upload yet.
    Verified,
    /// Nothing to verify (a layout directory); no upload yet.
    Waiting,
    Uploading,
    /// Every missing blob of it is in the registry.
    Done,
}

#[derive(Debug, Clone)]
struct Snapshot {
    label: String,
    stage: Stage,
    pos: u64,
    len: u64,
    /// Blobs done and to do, while uploading.
    blobs: (usize, usize),
    /// How long a finished upload took.
    took: Option<Duration>,
}

/// One arch's line before it is fitted to the width.
#[derive(Debug, Clone)]
struct Row {
    snap: Snapshot,
    /// Bytes per second, 0 when not known yet.
    rate: f64,
    left: Option<Duration>,
    /// The display is ending: what is unfinished was stopped.
    ended: bool,
}

/// How much a line gives up to fit: each level drops one more thing, the bar
/// (which the numbers repeat) first and the blob count last.
const LEVELS: usize = 6;
/// The narrowest bar worth drawing, and the widest (wider says nothing more).
const BAR_MIN: usize = 10;
const BAR_MAX: usize = 40;
/// The widest label: an `--image` source is named by its file until its arch is known.
const LABEL_MAX: usize = 20;

impl Row {
    /// The four fields (what, bytes, rate, when) at `level`; empty ones are left out.
    fn fields(&self, level: usize) -> [String; 4] {
        let s = &self.snap;
        let bytes = if level >= 4 {
            human::size(s.pos)
        } else {
            format!("{}/{}", human::size(s.pos), human::size(s.len))
        };
        let rate = |r: f64| {
            if level >= 3 || r < 1.0 {
                String::new()
            } else {
                format!("{}/s", human::size(r as u64))
            }
        };
        let when = if self.ended {
            "stopped".to_string()
        } else {
            match self.left {
                Some(left) if level >= 2 => clock(left),
                Some(left) => format!("{} left", clock(left)),
                None => String::new(),
            }
        };
        let blobs = |(done, total): (usize, usize)| {
            if level >= 5 {
                format!("{done}/{total}")
            } else {
                format!("{done}/{total} blobs")
            }
        };
        match s.stage {
            Stage::Verifying => ["verifying".into(), bytes, rate(self.rate), when],
            Stage::Verified => [
                "verified".into(),
                human::size(s.len),
                String::new(),
                String::new(),
            ],
            Stage::Waiting => [
                if self.ended { "ready" } else { "waiting" }.into(),
                String::new(),
                String::new(),
                String::new(),
            ],
            Stage::Uploading => [blobs(s.blobs), bytes, rate(self.rate), when],
            Stage::Done => {
                let average = match s.took {
                    Some(t) if s.len > 0 && !t.is_zero() => s.len as f64 / t.as_secs_f64(),
                    _ => 0.0,
                };
                [blobs(s.blobs), bytes, rate(average), "done".into()]
            }
        }
    }

    fn fraction(&self) -> f64 {
        match self.snap.stage {
            Stage::Verified | Stage::Done => 1.0,
            _ if self.snap.len == 0 => 0.0,
            _ => self.snap.pos as f64 / self.snap.len as f64,
        }
    }
}

/// The lines of one frame, none wider than `width` columns: the title, then one
/// line per arch. Every arch line gives up the same fields, so their columns line up.
fn frame(title: &str, rows: &[Row], width: usize) -> Vec<String> {
    let mut lines = vec![truncate(title, width)];
    let labels: Vec<String> = rows.iter().map(|r| shorten(&r.snap.label)).collect();
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    for level in 0..LEVELS {
        let cells: Vec<[String; 4]> = rows.iter().map(|r| r.fields(level)).collect();
        let mut slot_w = [0usize; 4];
        for c in &cells {
            for (w, f) in slot_w.iter_mut().zip(c) {
                *w = (*w).max(f.chars().count());
            }
        }
        let used: Vec<usize> = slot_w.iter().copied().filter(|&w| w > 0).collect();
        let text_w = used.iter().sum::<usize>() + used.len().saturating_sub(1);
        // label, a space, " [bar] " around the bar when there is one, the fields
        let bar = (level == 0)
            .then(|| width.checked_sub(label_w + text_w + 4))
            .flatten()
            .filter(|&room| room >= BAR_MIN)
            .map(|room| room.min(BAR_MAX));
        let fits = label_w + 1 + text_w <= width;
        if (level == 0 && bar.is_none()) || (!fits && level + 1 < LEVELS) {
            continue;
        }
        for ((row, cell), label) in rows.iter().zip(&cells).zip(&labels) {
            let mut line = pad(label, label_w);
            if let Some(w) = bar {
                line.push_str(" [");
                line.push_str(&draw_bar(row.fraction(), w));
                line.push(']');
            }
            for (f, w) in cell.iter().zip(slot_w) {
                if w > 0 {
                    line.push(' ');
                    line.push_str(&pad(f, w));
                }
            }
            lines.push(truncate(line.trim_end(), width));
        }
        break;
    }
    lines
}

fn draw_bar(fraction: f64, width: usize) -> String {
    let full = ((fraction.clamp(0.0, 1.0) * width as f64) as usize).min(width);
    if full == width {
        return "=".repeat(width);
    }
    let head = if fraction > 0.0 { ">" } else { " " };
    format!("{}{head}{}", "=".repeat(full), " ".repeat(width - full - 1))
}

fn pad(s: &str, width: usize) -> String {
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width.saturating_sub(n)))
}

/// A label of at most [`LABEL_MAX`] columns, its end kept (where file names differ).
fn shorten(label: &str) -> String {
    let n = label.chars().count();
    if n <= LABEL_MAX {
        return label.to_string();
    }
    let tail: String = label.chars().skip(n - (LABEL_MAX - 1)).collect();
    format!("…{tail}")
}

fn truncate(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// How often the counters are read and the lines recomposed.
const REFRESH: Duration = Duration::from_millis(100);

/// The bars being drawn, so that [`say`] prints above them, and how many
/// displays draw there: the containers of a release, pushed in parallel, each
/// add their block to the one set of bars.
static ACTIVE: Mutex<Option<(MultiProgress, usize)>> = Mutex::new(None);

/// The set of bars a new display adds its block to.
fn join_active() -> MultiProgress {
    let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    let (multi, users) = active.get_or_insert_with(|| {
        (
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            0,
        )
    });
    *users += 1;
    multi.clone()
}

/// A display is done drawing; the last one out lets [`say`] print plainly.
fn leave_active() {
    let mut active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, users)) = active.as_mut() {
        *users -= 1;
        if *users == 0 {
            *active = None;
        }
    }
}

/// Prints a line on stderr: above the progress lines while they are drawn, so
/// neither garbles the other.
pub fn say(line: &str) {
    let active = ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|(m, _)| m.clone());
    if let Some(multi) = active
        && !multi.is_hidden()
        && multi.println(line).is_ok()
    {
        return;
    }
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The registry client's lines (retries, notes, `--debug`), put above the
/// progress lines when they are drawn.
#[derive(Debug, Default, Clone, Copy)]
pub struct Lines;

impl crate::registry::Observer for Lines {
    fn line(&self, line: &str) {
        say(line);
    }
}

/// Draws a [`Progress`] on stderr until finished or dropped; the last frame stays.
pub struct Display {
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    /// The title's last word: the outcome, or `stopped` when dropped unfinished.
    outcome: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Display {
    pub fn start(progress: Arc<Progress>) -> Display {
        let stop = Arc::new(AtomicBool::new(false));
        let outcome = Arc::new(Mutex::new("stopped".to_string()));
        let multi = join_active();
        let thread = {
            let (progress, stop, outcome) = (progress.clone(), stop.clone(), outcome.clone());
            std::thread::spawn(move || draw(&multi, &progress, &stop, &outcome))
        };
        Display {
            progress,
            stop,
            outcome,
            thread: Some(thread),
        }
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The counters, to hand to another thread.
    pub fn shared(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Draws the last frame, its title ending with `outcome` (`pushed`, ...).
    pub fn finish(self, outcome: &str) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = outcome.to_string();
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Per arch: its bar (for indicatif's rate estimate) and the stage it was in.
struct Track {
    bar: ProgressBar,
    stage: Option<Stage>,
}

/// The drawing thread: a frame every [`REFRESH`] until `stop`, then the last one.
fn draw(multi: &MultiProgress, progress: &Progress, stop: &AtomicBool, outcome: &Mutex<String>) {
    let style = ProgressStyle::with_template("{wide_msg}").expect("a valid template");
    let add = || multi.add(ProgressBar::new(0).with_style(style.clone()));
    let title = add();
    let mut tracks: Vec<Track> = progress
        .arches
        .iter()
        .map(|_| Track {
            bar: add(),
            stage: None,
        })
        .collect();
    loop {
        let ended = stop.load(Ordering::Relaxed);
        let rows: Vec<Row> = progress
            .arches
            .iter()
            .zip(&mut tracks)
            .map(|(arch, track)| {
                let snap = arch.snapshot();
                // A new stage is a new measurement: its rate starts afresh.
                if track.stage != Some(snap.stage) {
                    track.bar.reset();
                    track.bar.set_length(snap.len);
                    track.stage = Some(snap.stage);
                }
                track.bar.set_position(snap.pos);
                let running = matches!(snap.stage, Stage::Verifying | Stage::Uploading);
                let rate = if running { track.bar.per_sec() } else { 0.0 };
                Row {
                    left: (rate >= 1.0).then(|| track.bar.eta()),
                    rate,
                    ended: ended && running,
                    snap,
                }
            })
            .collect();
        let heading = if ended {
            outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        } else {
            progress.phase().words().to_string()
        };
        let width = console::Term::stderr().size().1 as usize;
        let lines = frame(&format!("{}: {heading}", progress.title), &rows, width);
        for (bar, line) in std::iter::once(&title)
            .chain(tracks.iter().map(|t| &t.bar))
            .zip(lines)
        {
            bar.set_message(line);
        }
        if ended {
            break;
        }
        std::thread::park_timeout(REFRESH);
    }
    leave_active();
    for bar in std::iter::once(&title).chain(tracks.iter().map(|t| &t.bar)) {
        bar.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, stage: Stage, pos: u64, len: u64, blobs: (usize, usize)) -> Row {
        Row {
            snap: Snapshot {
                label: label.into(),
                stage,
                pos,
                len,
                blobs,
                took: (stage == Stage::Done).then(|| Duration::from_secs(2)),
            },
            rate: 12.3 * 1024.0 * 1024.0,
            left: Some(Duration::from_secs(65)),
            ended: false,
        }
    }

    fn uploading() -> Vec<Row> {
        vec![
            row("x86_64", Stage::Uploading, 63 << 20, 128 << 20, (7, 17)),
            row("aarch64", Stage::Verifying, 1 << 30, 3 << 30, (0, 0)),
            row("ppc64le", Stage::Done, 900 << 20, 900 << 20, (17, 17)),
            row("s390x", Stage::Verified, 0, 1023 << 30, (0, 0)),
        ]
    }

    #[test]
    fn a_wide_terminal_gets_a_bar_and_every_field() {
        let lines = frame("fcos: uploading", &uploading(), 200);
        assert_eq!(lines[0], "fcos: uploading");
        let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(lines[1].starts_with("x86_64  [====="), "{lines:#?}");
        assert!(
            words(&lines[1]).ends_with("] 7/17 blobs 63.0 MiB/128.0 MiB 12.3 MiB/s 1:05 left"),
            "{lines:#?}"
        );
        assert!(
            words(&lines[2]).ends_with("] verifying 1.0 GiB/3.0 GiB 12.3 MiB/s 1:05 left"),
            "{lines:#?}"
        );
        assert!(
            words(&lines[3]).ends_with("] 17/17 blobs 900.0 MiB/900.0 MiB 450.0 MiB/s done"),
            "{lines:#?}"
        );
        assert!(
            words(&lines[4]).ends_with("] verified 1023.0 GiB"),
            "{lines:#?}"
        );
        // the columns line up: every bar is as wide
        let bar_end: Vec<_> = lines[1..].iter().map(|l| l.find(']')).collect();
        assert!(bar_end.iter().all(|e| *e == bar_end[0]), "{lines:#?}");
    }

    #[test]
    fn no_line_is_ever_wider_than_the_terminal() {
        let mut ended = uploading();
        for r in &mut ended {
            r.ended = true;
        }
        for rows in [uploading(), ended] {
            for width in 1..=250 {
                for line in frame("base-oscontainer: uploading", &rows, width) {
                    assert!(line.chars().count() <= width, "{width}: {line:?}");
                }
            }
        }
    }

    #[test]
    fn a_narrow_terminal_drops_the_bar_before_any_number() {
        let rows = uploading();
        let lines = frame("t", &rows, 60);
        assert!(!lines[1].contains('['), "{lines:#?}");
        assert!(lines[1].contains("7/17 blobs"), "{lines:#?}");
        // at 40 columns the blob count and the bytes sent are still there
        let lines = frame("t", &rows, 40);
        assert!(lines[1].starts_with("x86_64  7/17"), "{lines:#?}");
        assert!(lines[1].contains("63.0 MiB"), "{lines:#?}");
    }

    #[test]
    fn resent_bytes_never_show_more_than_the_total() {
        let p = Progress::new("t", vec![("x86_64".into(), 0)]);
        let a = p.arch("x86_64").unwrap();
        a.start_upload(1, 10);
        a.sent().fetch_add(25, Ordering::Relaxed);
        assert_eq!(a.snapshot().pos, 10);
    }

    #[test]
    fn an_arch_is_done_when_its_last_blob_is() {
        let p = Progress::new("t", vec![("img.ociarchive".into(), 100)]);
        let a = p.source(0).unwrap();
        a.verified().fetch_add(40, Ordering::Relaxed);
        assert_eq!(a.snapshot().stage, Stage::Verifying);
        a.verified().fetch_add(60, Ordering::Relaxed);
        assert_eq!(a.snapshot().stage, Stage::Verified);
        a.relabel("s390x");
        let a = p.arch("s390x").unwrap();
        a.start_upload(2, 50);
        a.blob_done();
        assert_eq!(a.snapshot().stage, Stage::Uploading);
        a.blob_done();
        assert_eq!(a.snapshot().stage, Stage::Done);
        // nothing missing: done at once
        let p = Progress::new("t", vec![("x86_64".into(), 0)]);
        p.arch("x86_64").unwrap().start_upload(0, 0);
        assert_eq!(p.arch("x86_64").unwrap().snapshot().stage, Stage::Done);
    }

    #[test]
    fn long_file_names_keep_their_end() {
        let mut rows = uploading();
        rows[1].snap.label = "fedora-coreos-41.1-ostree.aarch64.ociarchive".into();
        let lines = frame("t", &rows, 100);
        assert!(lines[2].starts_with("….aarch64.ociarchive ["), "{lines:#?}");
        assert!(
            lines[1].starts_with(&format!("{:20} [", "x86_64")),
            "{lines:#?}"
        );
    }
}
