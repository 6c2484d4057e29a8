#!/usr/bin/env bash
# redis-rootfs.sh CONTEXT_DIR
#
# Prepares a Docker build context for a Redis image that needs no base image:
# CONTEXT_DIR/rootfs receives the local redis-server binary (under the name
# redis-server, since it chooses its mode from argv[0]), every shared library
# ldd lists for it and the dynamic loader, at their original paths. The
# Dockerfile that goes with it is deploy/redis/Dockerfile (FROM scratch).
#
# REDIS_SERVER overrides the binary (default: redis-server found on PATH).
set -euo pipefail

if [[ $# -ne 1 ]]; then
	echo "usage: $0 CONTEXT_DIR" >&2
	exit 2
fi
ctx=$1

bin=${REDIS_SERVER:-$(command -v redis-server || true)}
if [[ -z "$bin" || ! -x "$bin" ]]; then
	echo "redis-rootfs: redis-server not found on PATH; install it (apt-get install redis-server) or set REDIS_SERVER" >&2
	exit 1
fi
real=$(readlink -f "$bin")

rootfs=$ctx/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/data" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$real" "$rootfs/usr/local/bin/redis-server"
chmod 0755 "$rootfs/usr/local/bin/redis-server"

# ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the
# loader; the vDSO has no path and is skipped.
libs=$(ldd "$real" | awk '
	$2 == "=>" && $3 ~ /^\// { print $3; next }
	$1 ~ /^\// { print $1 }
')
if [[ -z "$libs" ]]; then
	echo "redis-rootfs: ldd listed no libraries for $real" >&2
	exit 1
fi
while IFS= read -r lib; do
	mkdir -p "$rootfs$(dirname "$lib")"
	cp -L "$lib" "$rootfs$lib"
done <<<"$libs"

echo "redis-rootfs: $bin ($real) and $(wc -l <<<"$libs") libraries copied to $rootfs"
