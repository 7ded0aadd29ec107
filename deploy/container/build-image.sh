#!/usr/bin/env bash
# Builds firegate's runtime image FROM scratch out of a locally built binary,
# with exactly what deploy/Dockerfile's distroless stage provides: the shared
# libraries `ldd` names, CA certificates, a non-root user (65532), the sample
# config and policies. For machines that cannot pull base images.
#   deploy/container/build-image.sh [IMAGE]     (default firegate:local)
# FIREGATE_BIN picks the binary (default target/release/firegate, else
# target/debug/firegate). Needs buildah, or podman.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=${1:-firegate:local}
bin=${FIREGATE_BIN:-}
if [ -z "$bin" ]; then
  for candidate in target/release/firegate target/debug/firegate; do
    [ -x "$candidate" ] && { bin=$candidate; break; }
  done
fi
[ -n "$bin" ] && [ -x "$bin" ] || { echo "no firegate binary (cargo build first, or set FIREGATE_BIN)" >&2; exit 2; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/firegate" "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/firegate"
# The dynamic loader and every library it will map, at their own paths.
ldd "$bin" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+ \(/{print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
cp deploy/firegate.yaml "$root/etc/firegate/firegate.yaml"
cp -r policies "$root/etc/firegate/policies"

cat >"$stage/Containerfile" <<'CONTAINERFILE'
FROM scratch
COPY rootfs /
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/firegate"]
CMD ["serve", "--config", "/etc/firegate/firegate.yaml"]
CONTAINERFILE

if command -v buildah >/dev/null; then
  buildah ${FIREGATE_STORAGE_OPTS:-} build --quiet -t "$image" -f "$stage/Containerfile" "$stage" >/dev/null
elif command -v podman >/dev/null; then
  podman ${FIREGATE_STORAGE_OPTS:-} build --quiet -t "$image" -f "$stage/Containerfile" "$stage" >/dev/null
else
  echo "neither buildah nor podman is installed" >&2
  exit 2
fi
echo "built $image from $bin ($(du -sh "$root" | cut -f1) root filesystem)"
