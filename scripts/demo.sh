#!/usr/bin/env bash
# The main job on a sample: start a local registry, generate a sample cosa build,
# push it with pushgate, then push again to show that a rerun is a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --quiet --bin pushgate --example sample-build
target="${CARGO_TARGET_DIR:-target}/debug"

demo=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$demo/registry.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $demo/registry
http:
  addr: 127.0.0.1:$port
log:
  level: warn
YAML
docker-registry serve "$demo/registry.yml" >"$demo/registry.log" 2>&1 &
registry=$!
trap 'kill $registry 2>/dev/null; rm -rf "$demo"' EXIT
until curl -fs "http://127.0.0.1:$port/v2/" >/dev/null; do
    kill -0 $registry 2>/dev/null || { cat "$demo/registry.log"; exit 1; }
    sleep 0.1
done

echo "== a sample cosa build in $demo/workdir"
"$target/examples/sample-build" "$demo/workdir" --arches x86_64,aarch64,s390x

push() {
    "$target/pushgate" push --workdir "$demo/workdir" --tls-verify=false \
        --repo "127.0.0.1:$port/fedora/fedora-coreos" --tag stable --tag 41.20261127.1.0 \
        --artifact ostree --metajsonname base-oscontainer "$@"
}
echo; echo "== first push"
push
echo; echo "== the same push again: nothing to do"
push
echo; echo "== what the registry serves (skopeo inspect --raw)"
skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/fedora/fedora-coreos:stable"
echo; echo; echo "== what meta.json records (x86_64)"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["base-oscontainer"], indent=4))' \
    "$demo"/workdir/builds/*/x86_64/meta.json
