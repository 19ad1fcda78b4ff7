//! Generates a sample cosa workdir holding real OCI archives, e.g. for the quick-start:
//!
//! ```text
//! cargo run --example sample-build -- WORKDIR [--build ID] [--arches x86_64,aarch64] \
//!     [--layers N] [--layer-size BYTES]
//! ```
//!
//! Prints one line per archive written (arch, artifact, path, sha256, size), then a
//! last line holding only the build id.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use pushgate_sample::{SampleBuild, write_build};

/// Generate a sample cosa build with OCI archives (ostree and extensions-container on
/// every arch, kubevirt on the first arch only): every artifact examples/release.toml
/// names.
#[derive(Parser)]
struct Args {
    /// The cosa workdir to write (`builds/` goes inside it; earlier builds are kept).
    workdir: PathBuf,
    /// Build id.
    #[arg(long = "build", default_value = "41.20261127.1.0")]
    build_id: String,
    /// Comma-separated basearches, in builds.json order.
    #[arg(long, value_delimiter = ',', default_value = "x86_64,aarch64")]
    arches: Vec<String>,
    /// Layers per image.
    #[arg(long, default_value_t = 3)]
    layers: usize,
    /// Bytes of content per layer.
    #[arg(long, default_value_t = 64 * 1024)]
    layer_size: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let arches: Vec<&str> = args.arches.iter().map(String::as_str).collect();
    let mut build = SampleBuild::product(&args.build_id, &arches);
    build.layers = args.layers;
    build.layer_size = args.layer_size;
    write_build(&args.workdir, &build)?;

    for arch in &build.arches {
        let arch_dir = args.workdir.join("builds").join(&build.build_id).join(arch);
        let meta_path = arch_dir.join("meta.json");
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?,
        )?;
        for (artifact, image) in meta["images"].as_object().into_iter().flatten() {
            let path = arch_dir.join(image["path"].as_str().unwrap_or_default());
            println!(
                "{arch} {artifact} {} sha256:{} {} bytes",
                path.display(),
                image["sha256"].as_str().unwrap_or_default(),
                image["size"]
            );
        }
    }
    println!("{}", build.build_id);
    Ok(())
}
