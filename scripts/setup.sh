#!/usr/bin/env bash
# Installs what pushgate's demo and tests need on a fresh Debian machine:
# the registry, skopeo and podman from Debian (and GNU time for the benchmarks,
# OpenSSL's headers for the tests' signature checker), and the Rust target for
# policies.
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v podman >/dev/null || need+=(podman)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v curl >/dev/null || need+=(curl)
command -v man >/dev/null || need+=(man-db) # renders `pushgate man` in the tests
[ -x /usr/bin/time ] || need+=(time) # GNU time: max RSS in scripts/bench.sh
command -v python3 >/dev/null || need+=(python3) # the soak reads meta.json as cosa's Python does
# OpenSSL's headers, for the tests' independent signature checker (the
# sigstore crate's crypto backend: openssl-sys builds against them)
command -v pkg-config >/dev/null || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
