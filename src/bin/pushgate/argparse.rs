//! Long flags as Python's argparse reads them, so that cosa's callers work unchanged:
//! `--auth=FILE` is `--authfile=FILE` because `auth` is a prefix of exactly one long
//! option. The rewrite happens on argv, before clap parses it, using the long option
//! names of the clap definition itself (never a hand-kept list).
//!
//! The rules, argparse's (`allow_abbrev=True`):
//! - a token `--NAME` or `--NAME=VALUE` whose NAME is exactly a long option (or alias)
//!   of the subcommand at hand is left alone: an exact match always wins;
//! - otherwise, when NAME is a prefix of the names of exactly one option, it becomes that
//!   option's long name (`=VALUE` kept as is);
//! - a prefix of several options is a usage error naming them all;
//! - a prefix of none is left for clap to refuse;
//! - everything after a bare `--`, short flags (`-q`), the text after `=`, and tokens
//!   not starting with `--` are never touched. As in argparse, a token starting with `--`
//!   is always an option, even right after an option that wants a value: write
//!   `--tag=--odd` to pass such a value.
//!
//! Subcommand names are matched exactly (argparse does not abbreviate them either).

use std::ffi::OsString;
use std::fmt;

use clap::Command;

/// A prefix matching several long options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ambiguous {
    /// The subcommand names leading to the command whose options were matched,
    /// e.g. `["policy", "facts"]`.
    pub path: Vec<String>,
    /// The option as given, without any `=VALUE`, e.g. `--t`.
    pub option: String,
    /// The long options it could be, as `--name`, in definition order.
    pub candidates: Vec<String>,
}

impl fmt::Display for Ambiguous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ambiguous option: {} could match {}",
            self.option,
            self.candidates.join(", ")
        )
    }
}

impl std::error::Error for Ambiguous {}

/// argv with its long options expanded, and what the expansion learnt on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The whole argv, program name first, every unique prefix replaced by its
    /// option's long name; an ambiguous one is left as it was.
    pub args: Vec<OsString>,
    /// The subcommand names leading to the command whose options were matched,
    /// e.g. `["policy", "facts"]` (canonical names, not aliases).
    pub path: Vec<String>,
    /// The first prefix that matched several options, if any: a usage error.
    pub ambiguous: Option<Ambiguous>,
}

/// Rewrites abbreviated long options of `args` (a whole argv, program name first) to
/// their full names, per the command definition `cmd`. `cmd` should have been
/// [`Command::build`]t so that `--help` and `--version` are among its options.
/// An ambiguous prefix does not stop the rewrite of the rest (so that the failure
/// path reads the same argv as a parse would): it is kept and reported.
pub fn expand(cmd: &Command, args: &[OsString]) -> Expanded {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.iter();
    if let Some(program) = iter.next() {
        out.push(program.clone());
    }
    let mut current = cmd;
    let mut path = Vec::new();
    let mut ambiguous = None;
    // Once a positional argument that is not a subcommand has been seen at a level with
    // subcommands, nothing further is a subcommand.
    let mut descend = true;
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else {
            out.push(arg.clone());
            continue;
        };
        if text == "--" {
            out.push(arg.clone());
            out.extend(iter.cloned());
            break;
        }
        if let Some(body) = text.strip_prefix("--") {
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            match resolve(current, name) {
                Resolved::Keep => out.push(arg.clone()),
                Resolved::Long(long) => out.push(match value {
                    Some(v) => format!("--{long}={v}").into(),
                    None => format!("--{long}").into(),
                }),
                Resolved::Ambiguous(candidates) => {
                    out.push(arg.clone());
                    ambiguous.get_or_insert_with(|| Ambiguous {
                        path: path.clone(),
                        option: format!("--{name}"),
                        candidates: candidates.into_iter().map(|c| format!("--{c}")).collect(),
                    });
                }
            }
            continue;
        }
        out.push(arg.clone());
        if descend && !text.starts_with('-') && current.has_subcommands() {
            match current.find_subcommand(text) {
                Some(sub) => {
                    path.push(sub.get_name().to_string());
                    current = sub;
                }
                None => descend = false,
            }
        }
    }
    Expanded {
        args: out,
        path,
        ambiguous,
    }
}

enum Resolved<'a> {
    /// Exact match, empty name, or no match at all: leave the token as it is.
    Keep,
    /// A unique prefix of this option's long name or aliases.
    Long(&'a str),
    /// A prefix of these options' long names (one name per option).
    Ambiguous(Vec<&'a str>),
}

fn resolve<'a>(cmd: &'a Command, name: &str) -> Resolved<'a> {
    if name.is_empty() {
        return Resolved::Keep;
    }
    let mut matches: Vec<&'a str> = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        let aliases = arg.get_all_aliases().unwrap_or_default();
        let names = std::iter::once(long).chain(aliases);
        let mut prefix_of_this = false;
        for n in names {
            if n == name {
                return Resolved::Keep;
            }
            prefix_of_this |= n.starts_with(name);
        }
        if prefix_of_this && !matches.contains(&long) {
            matches.push(long);
        }
    }
    // cosa's own flags win a tie with pushgate's: the pipeline's abbreviations
    // mean what they mean to cosa's argparse, which has none of pushgate's
    // flags (`--re` is `--repo` there, not also `--retry-times`).
    let cosa: Vec<&'a str> = matches
        .iter()
        .copied()
        .filter(|m| COSA_FLAGS.contains(m))
        .collect();
    match (matches.len(), cosa.len()) {
        (0, _) => Resolved::Keep,
        (1, _) => Resolved::Long(matches[0]),
        (_, 1) => Resolved::Long(cosa[0]),
        _ => Resolved::Ambiguous(matches),
    }
}

/// The long flags of `cosa push-container-manifest`.
const COSA_FLAGS: &[&str] = &[
    "repo",
    "tag",
    "authfile",
    "v2s2",
    "force",
    "image",
    "artifact",
    "build",
    "arch",
    "metajsonname",
    "write-digest-to-file",
];

#[cfg(test)]
mod tests {
    use super::*;

    use clap::{Arg, ArgAction};

    /// A small tree shaped like pushgate's: options with values, flags, an alias,
    /// a subcommand with an alias and a nested subcommand group.
    fn cli() -> Command {
        let push = Command::new("push")
            .visible_alias("push-container-manifest")
            .arg(Arg::new("repo").long("repo"))
            .arg(Arg::new("tag").long("tag").action(ArgAction::Append))
            .arg(Arg::new("tls-verify").long("tls-verify"))
            .arg(Arg::new("authfile").long("authfile"))
            .arg(Arg::new("policy").long("policy"))
            .arg(Arg::new("policy-settings").long("policy-settings"))
            .arg(Arg::new("policy-fuel").long("policy-fuel"))
            .arg(
                Arg::new("write-digest-to-file")
                    .long("write-digest-to-file")
                    .alias("digestfile"),
            )
            .arg(
                Arg::new("quiet")
                    .long("quiet")
                    .short('q')
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("image").long("image").num_args(1..));
        let facts = Command::new("facts")
            .arg(Arg::new("repo").long("repo"))
            .arg(Arg::new("out").long("out"));
        let test = Command::new("test")
            .arg(Arg::new("module"))
            .arg(Arg::new("json").long("json").action(ArgAction::SetTrue))
            .arg(Arg::new("junit").long("junit"));
        let mut cmd = Command::new("pushgate")
            .version("1")
            .subcommand(push)
            .subcommand(Command::new("release").arg(Arg::new("config").long("config")))
            .subcommand(Command::new("policy").subcommand(facts).subcommand(test));
        cmd.build();
        cmd
    }

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("pushgate")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn ok(args: &[&str]) -> Vec<String> {
        let e = expand(&cli(), &argv(args));
        if let Some(a) = e.ambiguous {
            panic!("{args:?}: {a}");
        }
        e.args
            .into_iter()
            .skip(1)
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn err(args: &[&str]) -> Ambiguous {
        let e = expand(&cli(), &argv(args));
        e.ambiguous
            .unwrap_or_else(|| panic!("{args:?} expanded to {:?}", e.args))
    }

    #[test]
    fn unique_prefix_expands() {
        assert_eq!(ok(&["push", "--auth", "F"]), ["push", "--authfile", "F"]);
        assert_eq!(ok(&["push", "--r", "R"]), ["push", "--repo", "R"]);
        assert_eq!(ok(&["push", "--ta", "T"]), ["push", "--tag", "T"]);
        assert_eq!(ok(&["push", "--tl"]), ["push", "--tls-verify"]);
        assert_eq!(ok(&["push", "--qu"]), ["push", "--quiet"]);
        assert_eq!(
            ok(&["push", "--w", "F"]),
            ["push", "--write-digest-to-file", "F"]
        );
    }

    #[test]
    fn prefix_with_equals_keeps_the_value() {
        assert_eq!(ok(&["push", "--auth=tmp/s"]), ["push", "--authfile=tmp/s"]);
        assert_eq!(ok(&["push", "--tls=false"]), ["push", "--tls-verify=false"]);
        // the value is never looked at, even when it looks like an option or has '='
        assert_eq!(ok(&["push", "--ta=--re"]), ["push", "--tag=--re"]);
        assert_eq!(ok(&["push", "--ta=a=b"]), ["push", "--tag=a=b"]);
        assert_eq!(ok(&["push", "--ta="]), ["push", "--tag="]);
    }

    #[test]
    fn exact_match_wins_over_longer_options() {
        // --policy is also a prefix of --policy-settings and --policy-fuel
        assert_eq!(
            ok(&["push", "--policy", "p.wasm"]),
            ["push", "--policy", "p.wasm"]
        );
        assert_eq!(
            ok(&["push", "--policy=p.wasm"]),
            ["push", "--policy=p.wasm"]
        );
        assert_eq!(ok(&["push", "--tag", "T"]), ["push", "--tag", "T"]);
    }

    #[test]
    fn alias_counts_as_a_name() {
        // exact alias: left for clap, which knows it
        assert_eq!(
            ok(&["push", "--digestfile", "F"]),
            ["push", "--digestfile", "F"]
        );
        // prefix of the alias only: the option's long name
        assert_eq!(
            ok(&["push", "--dig", "F"]),
            ["push", "--write-digest-to-file", "F"]
        );
    }

    #[test]
    fn ambiguous_prefix_is_an_error_naming_every_candidate() {
        let e = err(&["push", "--poli", "x"]);
        assert_eq!(e.path, ["push"]);
        assert_eq!(e.option, "--poli");
        assert_eq!(
            e.to_string(),
            "ambiguous option: --poli could match --policy, --policy-settings, --policy-fuel"
        );
        let e = err(&["push", "--poli=x"]);
        assert_eq!(e.option, "--poli");
        assert_eq!(
            e.candidates,
            ["--policy", "--policy-settings", "--policy-fuel"]
        );
        let e = err(&["push", "--policy-"]);
        assert_eq!(e.candidates, ["--policy-settings", "--policy-fuel"]);
    }

    #[test]
    fn unknown_options_are_left_for_clap() {
        assert_eq!(ok(&["push", "--nope", "x"]), ["push", "--nope", "x"]);
        assert_eq!(ok(&["push", "--authfilex"]), ["push", "--authfilex"]);
        assert_eq!(ok(&["push", "--=x"]), ["push", "--=x"]);
    }

    #[test]
    fn after_double_dash_nothing_is_touched() {
        assert_eq!(
            ok(&["push", "--ta", "T", "--", "--auth", "--t"]),
            ["push", "--tag", "T", "--", "--auth", "--t"]
        );
        assert_eq!(ok(&["push", "--", "--"]), ["push", "--", "--"]);
    }

    #[test]
    fn short_flags_and_values_are_untouched() {
        assert_eq!(
            ok(&["push", "-q", "--ta", "-t"]),
            ["push", "-q", "--tag", "-t"]
        );
        assert_eq!(
            ok(&["push", "--ima", "oci:a", "oci:b", "-", "auth"]),
            ["push", "--image", "oci:a", "oci:b", "-", "auth"]
        );
        assert_eq!(ok(&["push", "--repo", "re"]), ["push", "--repo", "re"]);
    }

    #[test]
    fn a_value_starting_with_dashes_is_an_option_as_in_argparse() {
        // argparse would refuse `--tag --re` (expected one argument); so does clap after
        // the rewrite. `--tag=--re` is the way to pass such a value.
        assert_eq!(ok(&["push", "--tag", "--re"]), ["push", "--tag", "--repo"]);
    }

    #[test]
    fn each_subcommand_uses_its_own_options() {
        assert_eq!(
            ok(&["release", "--con", "c.toml"]),
            ["release", "--config", "c.toml"]
        );
        // --r is unique in push (--repo) but unknown to release
        assert_eq!(ok(&["release", "--r"]), ["release", "--r"]);
        assert_eq!(
            ok(&["policy", "facts", "--o", "f.json", "--re", "R"]),
            ["policy", "facts", "--out", "f.json", "--repo", "R"]
        );
        assert_eq!(
            ok(&["policy", "test", "m.wasm", "--js", "--ju", "x.xml"]),
            ["policy", "test", "m.wasm", "--json", "--junit", "x.xml"]
        );
        assert_eq!(err(&["policy", "test", "--j"]).path, ["policy", "test"]);
    }

    #[test]
    fn an_ambiguous_prefix_leaves_the_rest_expanded() {
        let e = expand(&cli(), &argv(&["push", "--poli", "x", "--ta", "T"]));
        assert_eq!(e.ambiguous.unwrap().option, "--poli");
        let words: Vec<_> = e.args.iter().skip(1).map(|a| a.to_str().unwrap()).collect();
        assert_eq!(words, ["push", "--poli", "x", "--tag", "T"]);
        assert_eq!(e.path, ["push"]);
    }

    #[test]
    fn the_path_names_subcommands_canonically() {
        let e = expand(&cli(), &argv(&["push-container-manifest", "--r", "R"]));
        assert_eq!(e.path, ["push"]);
        let e = expand(&cli(), &argv(&["policy", "test", "m.wasm"]));
        assert_eq!(e.path, ["policy", "test"]);
    }

    #[test]
    fn subcommand_alias_uses_the_subcommand_options() {
        assert_eq!(
            ok(&["push-container-manifest", "--auth=F"]),
            ["push-container-manifest", "--authfile=F"]
        );
        assert_eq!(err(&["push-container-manifest", "--pol"]).path, ["push"]);
    }

    #[test]
    fn cosa_flags_win_a_tie_with_pushgates_own() {
        // cosa has --tag alone under --t; --tls-verify is pushgate's.
        assert_eq!(ok(&["push", "--t", "x"]), ["push", "--tag", "x"]);
        assert_eq!(ok(&["push", "--tl"]), ["push", "--tls-verify"]);
    }

    #[test]
    fn help_and_version_take_part() {
        // `help` is an option of every subcommand once built, `version` of the top only
        assert_eq!(ok(&["push", "--he"]), ["push", "--help"]);
        assert_eq!(ok(&["--vers"]), ["--version"]);
        assert_eq!(ok(&["--h"]), ["--help"]);
    }

    #[test]
    fn subcommand_names_are_not_abbreviated() {
        assert_eq!(ok(&["pus", "--auth"]), ["pus", "--auth"]);
        // a positional that is not a subcommand stops the descent
        assert_eq!(
            ok(&["policy", "x", "test", "--j"]),
            ["policy", "x", "test", "--j"]
        );
    }

    #[test]
    fn non_utf8_arguments_pass_through() {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            let odd = OsString::from_vec(vec![b'-', b'-', 0xff]);
            let mut args = argv(&["push"]);
            args.push(odd.clone());
            let out = expand(&cli(), &args).args;
            assert_eq!(out.last(), Some(&odd));
        }
    }

    #[test]
    fn empty_argv() {
        assert_eq!(expand(&cli(), &[]).args, Vec::<OsString>::new());
        assert_eq!(ok(&[]), Vec::<String>::new());
    }
}

/// The same rules over pushgate's own definitions, so that a new option that makes a
/// cosa abbreviation ambiguous fails here first.
#[cfg(test)]
mod cli_tests {
    use super::*;

    use clap::CommandFactory;

    fn expand_real(args: &[&str]) -> Result<Vec<String>, Ambiguous> {
        let mut cmd = crate::cli::Cli::command();
        cmd.build();
        let argv: Vec<OsString> = std::iter::once("pushgate")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        let e = expand(&cmd, &argv);
        match e.ambiguous {
            Some(a) => Err(a),
            None => Ok(e
                .args
                .into_iter()
                .skip(1)
                .map(|a| a.into_string().unwrap())
                .collect()),
        }
    }

    #[test]
    fn cosa_release_pipeline_line() {
        let line = [
            "--auth=tmp/push-secret-KEY",
            "--repo=REPO",
            "--tag=STREAM",
            "--tag=VERSION",
            "--artifact=ostree",
            "--metajsonname=base-oscontainer",
            "--build=VERSION",
        ];
        for sub in ["push", "push-container-manifest"] {
            let mut args = vec![sub];
            args.extend(line);
            let mut want = vec![sub, "--authfile=tmp/push-secret-KEY"];
            want.extend(&line[1..]);
            assert_eq!(expand_real(&args).unwrap(), want);
        }
    }

    #[test]
    fn cosa_abbreviations_that_argparse_accepts() {
        let cases = [
            ("--auth", "--authfile"),
            ("--v2", "--v2s2"),
            ("--writ", "--write-digest-to-file"),
            ("--ima", "--image"),
            ("--art", "--artifact"),
            ("--meta", "--metajsonname"),
            ("--bui", "--build"),
            ("--arc", "--arch"),
            ("--fo", "--force"),
            ("--re", "--repo"),
            ("--ta", "--tag"),
        ];
        for (short, long) in cases {
            assert_eq!(expand_real(&["push", short]).unwrap(), ["push", long]);
        }
    }

    #[test]
    fn ambiguities_in_push() {
        // cosa has --tag alone under --t: its meaning wins over --tls-verify.
        assert_eq!(
            expand_real(&["push", "--t", "x"]).unwrap(),
            ["push", "--tag", "x"]
        );
        assert_eq!(
            expand_real(&["push", "--tl=false"]).unwrap(),
            ["push", "--tls-verify=false"]
        );
        let e = expand_real(&["push", "--pol", "x"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ambiguous option: --pol could match --policy, --policy-settings, --policy-fuel, --policy-memory-mib, --policy-timeout-ms"
        );
        let e = expand_real(&["push", "--a", "x"]).unwrap_err();
        assert_eq!(
            e.candidates,
            ["--artifact", "--arch", "--authfile"],
            "definition order"
        );
    }

    #[test]
    fn release_and_policy_subcommands_too() {
        assert_eq!(
            expand_real(&["release", "--con=c.toml", "--dry"]).unwrap(),
            ["release", "--config=c.toml", "--dry-run"]
        );
        assert_eq!(
            expand_real(&["policy", "facts", "--auth", "F"]).unwrap(),
            ["policy", "facts", "--authfile", "F"]
        );
        assert_eq!(
            expand_real(&["policy", "test", "m.wasm", "c", "--jun", "x"]).unwrap(),
            ["policy", "test", "m.wasm", "c", "--junit", "x"]
        );
    }
}
