//! `pushgate man`: a man page per command, pushgate(1), pushgate-push(1),
//! pushgate-policy-test(1), ..., made from the clap definitions (so they never
//! drift from `--help`), each naming its parent under SEE ALSO and its
//! subcommands' pages under SUBCOMMANDS, all of which `--out-dir` writes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_mangen::roff::{Roff, roman};

use crate::cli::{Cli, ManArgs};
use crate::out;

/// The whole command tree as the pages show it: built (so that every subcommand
/// has its `pushgate-...` name and `pushgate ...` synopsis), without clap's
/// `help` subcommand, which is no page.
fn tree() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The command whose page `pushgate man PATH...` shows (names or aliases, e.g.
/// `policy test`, `push-container-manifest`), or a usage error naming the word
/// that is not a subcommand.
pub fn page(path: &[String]) -> Result<clap::Command, clap::Error> {
    let mut cmd = tree();
    for word in path {
        let Some(sub) = cmd.find_subcommand(word).cloned() else {
            let known: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
            let shown = cmd.get_bin_name().unwrap_or("pushgate").to_string();
            let message = if known.is_empty() {
                format!("no man page for `{shown} {word}`: `{shown}` has no subcommands")
            } else {
                format!(
                    "no man page for `{shown} {word}`: `{shown}` has the subcommands {}",
                    known.join(", ")
                )
            };
            let mut root = Cli::command();
            root.build();
            return Err(root
                .find_subcommand_mut("man")
                .expect("man is a subcommand")
                .error(clap::error::ErrorKind::InvalidValue, message));
        };
        cmd = sub;
    }
    Ok(cmd)
}

/// The page's name without the section: `pushgate`, `pushgate-policy-test`.
fn name(cmd: &clap::Command) -> &str {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
}

/// The page of `cmd` (a command of [`tree`]), in roff.
fn render(cmd: &clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(concat!("pushgate ", env!("CARGO_PKG_VERSION")))
        .manual("pushgate")
        .render(&mut page)?;
    // The page one level up: pushgate-policy-test(1) belongs to pushgate-policy(1).
    if let Some((parent, _)) = name(cmd).rsplit_once('-') {
        let mut roff = Roff::new();
        roff.control("SH", ["SEE ALSO"]);
        roff.text([roman(format!("{parent}(1)"))]);
        roff.to_writer(&mut page)?;
    }
    Ok(page)
}

/// `cmd` and every command under it, parents first.
fn with_descendants(cmd: &clap::Command) -> Vec<clap::Command> {
    let mut all = vec![cmd.clone()];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all.extend(with_descendants(sub));
    }
    all
}

/// Writes the page of `cmd` and of every command under it to `dir`, named
/// `NAME.1`; returns the files written.
fn write_all(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--out-dir: cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for c in with_descendants(cmd) {
        let path = dir.join(format!("{}.1", name(&c)));
        std::fs::write(&path, render(&c)?)
            .with_context(|| format!("--out-dir: cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

pub fn run(args: &ManArgs) -> anyhow::Result<ExitCode> {
    // The path was checked when the arguments were parsed.
    let cmd = page(&args.path).map_err(|e| anyhow::anyhow!("{e}"))?;
    match &args.out_dir {
        Some(dir) => {
            let mut list = String::new();
            for path in write_all(&cmd, dir)? {
                list.push_str(&format!("{}\n", path.display()));
            }
            out::print(&list)?;
        }
        None => out::print(&String::from_utf8_lossy(&render(&cmd)?))?,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_a_page_named_after_its_path() {
        let names: Vec<String> = with_descendants(&tree())
            .iter()
            .map(|c| name(c).to_string())
            .collect();
        for want in [
            "pushgate",
            "pushgate-push",
            "pushgate-release",
            "pushgate-policy",
            "pushgate-policy-test",
            "pushgate-policy-facts",
            "pushgate-man",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.ends_with("-help")), "{names:?}");
    }

    #[test]
    fn a_path_by_name_or_alias_finds_the_page() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(name(&page(&words(&[])).unwrap()), "pushgate");
        assert_eq!(
            name(&page(&words(&["policy", "test"])).unwrap()),
            "pushgate-policy-test"
        );
        assert_eq!(
            name(&page(&words(&["push-container-manifest"])).unwrap()),
            "pushgate-push"
        );
        let e = page(&words(&["policy", "nope"])).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert!(page(&words(&["push", "x"])).is_err());
    }
}
