#!/usr/bin/env bash
# Install the Debian packages artifs needs to build, test and run.
# Installs only what is missing; uses sudo when not root.
set -euo pipefail

pkgs=(
	build-essential cmake pkg-config
	liblmdb-dev libxxhash-dev libjansson-dev libcsv-dev attr
	libfuse3-dev fuse3 libgit2-dev libarchive-dev libarchive-tools
	libcmocka-dev python3 python3-pytest git unzip zstd xz-utils
	libcurl4-openssl-dev squashfs-tools
)

# The S3 tests run a local S3-compatible server from the npm registry;
# Node.js and npm come from Debian unless the machine already has them.
if ! command -v npm >/dev/null 2>&1; then
	pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
