#!/usr/bin/env bash
# Builds the FROM scratch image (build-image.sh) and runs `firegate dev` in
# it as user 65532 on a read-only root filesystem, then asks its admin
# listener for /readyz. Exits 0 with a printed SKIP where this machine cannot
# build or run containers: a sandbox limitation never fails CI.
set -uo pipefail
reason="no OCI runtime found"
cd "$(dirname "$0")/../.."
image=firegate:ci
skip() { echo "SKIP: $*"; exit 0; }

missing=()
for tool in podman buildah runc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; }
  install || { apt-get update -q >/dev/null 2>&1 && install; } \
    || echo "note: could not install ${missing[*]}"
fi
command -v podman >/dev/null || skip "podman is not installed"
# With the tests' feature set (`peers` gates test binaries only; the crate's
# code is the same), so the test build that follows reuses this one.
[ -x target/debug/firegate ] || cargo build --quiet --features peers --bin firegate || skip "no firegate binary"
FIREGATE_BIN=${FIREGATE_BIN:-target/debug/firegate} deploy/container/build-image.sh "$image" \
  || skip "the image could not be built here"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
proxy=$(port) issuer=$(port) emulator=$(port) admin=$(port)
dev_args=(dev --policies /etc/firegate/policies
  --listen "127.0.0.1:$proxy" --issuer-listen "127.0.0.1:$issuer"
  --emulator-listen "127.0.0.1:$emulator" --admin-listen "127.0.0.1:$admin")

ready() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# 1. A real container: podman, as the image's user, read-only root, no
#    capabilities. Sandboxes like this project's lack CAP_SYS_RESOURCE, so
#    the limits asked for must not exceed the current ones; crun refuses
#    hybrid cgroups where runc does not, so runc is the second try.
log=$(mktemp)
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
for runtime in crun runc; do
  command -v "$runtime" >/dev/null || continue
  if podman run -d --name firegate-ci --replace --runtime "$runtime" --network host \
       --read-only --cap-drop ALL --security-opt no-new-privileges "${limits[@]}" \
       "$image" "${dev_args[@]}" >"$log" 2>&1 && ready; then
    echo "ran in podman ($runtime) as $(podman inspect --format '{{.Config.User}}' firegate-ci), read-only root, no capabilities: /readyz 200"
    podman rm -f firegate-ci >/dev/null 2>&1
    exit 0
  fi
  reason="$runtime: $(tail -1 "$log")"
  echo "podman run with $reason"
  podman rm -f firegate-ci >/dev/null 2>&1
done

# 2. The image's own root filesystem, chrooted, as 65532: what the
#    container would run, minus the namespaces podman could not make here.
mnt=$(podman image mount "$image" 2>/dev/null) || skip "podman run failed ($reason) and the image cannot be mounted"
chroot --userspec=65532:65532 "$mnt" /usr/local/bin/firegate --help >/dev/null 2>&1
case $? in
  0) ;;
  125) podman image unmount "$image" >/dev/null 2>&1; skip "podman run failed ($reason) and chroot is not permitted here" ;;
  *) podman image unmount "$image" >/dev/null 2>&1; echo "FAIL: the image's firegate does not run (missing library?)"; exit 1 ;;
esac
chroot --userspec=65532:65532 "$mnt" /usr/local/bin/firegate "${dev_args[@]}" >/dev/null 2>&1 &
pid=$!
if ready; then
  echo "podman run failed here ($reason); ran the image's root filesystem chrooted as 65532: /readyz 200"
  kill "$pid"; wait "$pid" 2>/dev/null
  podman image unmount "$image" >/dev/null 2>&1
  exit 0
fi
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
podman image unmount "$image" >/dev/null 2>&1
echo "FAIL: the image's firegate did not become ready (podman: $reason)"
exit 1
