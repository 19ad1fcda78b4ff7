//! The `pushgate` command line: argument parsing and printing over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser, Subcommand};

use pushgate::push::{PushRequest, push};
use pushgate::registry;
use pushgate::sources::SourceSpec;

/// Publish multi-arch container images from cosa builds, idempotently.
#[derive(Parser)]
#[command(name = "pushgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push a manifest list over per-arch images and record it in meta.json
    /// (a drop-in for `cosa push-container-manifest`).
    #[command(visible_alias = "push-container-manifest")]
    Push(PushArgs),
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["image", "artifact"]))]
struct PushArgs {
    /// Repository to push to, e.g. quay.io/fedora/fedora-coreos
    #[arg(long, value_name = "REPO")]
    repo: String,
    /// Tag to point at the manifest list (repeat for several; the first is the main one)
    #[arg(long = "tag", value_name = "TAG", required = true, action = ArgAction::Append)]
    tags: Vec<String>,
    /// containers auth.json with the registry credentials
    /// [default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json]
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// Publish Docker schema 2 manifests and a Docker manifest list instead of OCI
    #[arg(long)]
    v2s2: bool,
    /// Push and record even when registry and meta.json are up to date
    #[arg(long)]
    force: bool,
    /// Write the manifest list digest to FILE
    #[arg(long, value_name = "FILE")]
    write_digest_to_file: Option<PathBuf>,
    /// Image sources: oci-archive:PATH or oci:DIR, one per arch
    #[arg(long, value_name = "SRC", num_args = 1.., action = ArgAction::Append)]
    image: Vec<String>,
    /// cosa artifact holding the per-arch OCI archives (images.NAME in meta.json), e.g. ostree
    #[arg(long, value_name = "NAME", requires = "metajsonname")]
    artifact: Option<String>,
    /// meta.json key to record the push under, e.g. base-oscontainer
    #[arg(long, value_name = "KEY", requires = "artifact")]
    metajsonname: Option<String>,
    /// Build id, or `latest`
    #[arg(
        long,
        value_name = "ID",
        default_value = "latest",
        requires = "artifact"
    )]
    build: String,
    /// Arches to push (repeatable) [default: every arch of the build that has the artifact]
    #[arg(long = "arch", value_name = "ARCH", action = ArgAction::Append, requires = "artifact")]
    arches: Vec<String>,
    /// cosa workdir (the directory holding builds/)
    #[arg(long, value_name = "DIR", default_value = ".")]
    workdir: PathBuf,
    /// Verify TLS certificates; --tls-verify=false talks plain HTTP, as for a local registry
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    tls_verify: bool,
    /// Observe and plan, print the plan, write nothing anywhere
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout instead of the summary
    #[arg(long)]
    json: bool,
    /// Parallel uploads
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

impl PushArgs {
    fn request(self) -> PushRequest {
        let source = match self.artifact {
            Some(artifact) => SourceSpec::Artifact {
                workdir: self.workdir,
                artifact,
                key: self
                    .metajsonname
                    .expect("clap requires --metajsonname with --artifact"),
                build: self.build,
                arches: self.arches,
            },
            None => SourceSpec::Images(self.image),
        };
        PushRequest {
            repo: self.repo,
            tags: self.tags,
            source,
            v2s2: self.v2s2,
            force: self.force,
            dry_run: self.dry_run,
            registry: registry::Options {
                tls_verify: self.tls_verify,
                authfile: self.authfile,
                jobs: self.jobs as usize,
            },
            digest_file: self.write_digest_to_file,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    match cli.command {
        Command::Push(args) => {
            let json = args.json;
            match runtime.block_on(push(&args.request())) {
                Ok(report) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string(&report).expect("report serializes")
                        );
                    } else {
                        print!("{}", report.human());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("pushgate: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
