//! Arch names: cosa basearches (x86_64, aarch64, ...) and OCI platforms (amd64, arm64, ...).

/// Every cosa basearch pushgate knows, as `--arch` takes them.
pub const BASEARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x", "riscv64"];

/// The OCI `platform.architecture` for a cosa basearch, or `None` if unknown.
pub fn oci_arch(basearch: &str) -> Option<&'static str> {
    Some(match basearch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

/// The cosa basearch for an OCI architecture, or `None` if unknown.
pub fn basearch(oci_arch: &str) -> Option<&'static str> {
    Some(match oci_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_basearch_round_trips() {
        for &a in BASEARCHES {
            assert_eq!(basearch(oci_arch(a).unwrap()), Some(a));
        }
        assert_eq!(oci_arch("amd64"), None);
        assert_eq!(basearch("x86_64"), None);
    }
}
