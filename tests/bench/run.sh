#!/usr/bin/env bash
# artifs against its peers (restic, borg, squashfs + squashfuse_ll, git-lfs,
# ostree) on the same seeded data, disk and run.  Installs the peers from
# Debian packages if missing, builds artifs (release build in build/, as
# tests/run.sh does), runs tests/bench/peers.py and leaves the markdown table,
# JSON and chart in tests/bench/out/ (peers.md, peers.json, peers.png).
#
# usage: tests/bench/run.sh [--quick] [peers.py options...]
#   --quick   2,000 small files, 2 x 64 MiB, 3 versions (a few minutes)
#   default   20,000 small files, 4 x 512 MiB, 10 versions of 512 MiB
# Needs root (drop_caches, FUSE) and ~25 GB free under /var/tmp (full run).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
workdir=/var/tmp/artifs-peers
args=()
while [ $# -gt 0 ]; do
	case $1 in
	--workdir) workdir=$2; args+=("$1" "$2"); shift 2 ;;
	--workdir=*) workdir=${1#*=}; args+=("$1"); shift ;;
	*) args+=("$1"); shift ;;
	esac
done

if [ "$(id -u)" -ne 0 ]; then
	echo "run.sh: needs root (drop_caches, FUSE mounts)" >&2
	exit 2
fi

# unmount anything left under the work directory, whatever happens
cleanup() {
	local mp
	if [ -r /proc/self/mountinfo ]; then
		awk -v w="$workdir/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo |
			while read -r mp; do fusermount3 -uz "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# 1. peers (and artifs's own build dependencies)
bash "$root/tests/deps.sh"
peers=(restic borgbackup python3-llfuse squashfs-tools squashfuse git git-lfs ostree gnuplot-nox time fuse3)
missing=()
for p in "${peers[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. artifs, release build
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARTIFS_WERROR=ON \
	-DBUILD_TESTING=ON >/dev/null
cmake --build "$root/build" -j "$jobs" --target artifs

# 3-6. data, every case for every tool, report
start=$(date +%s)
status=0
python3 "$root/tests/bench/peers.py" --artifs "$root/build/cli/artifs" "${args[@]}" || status=$?
echo "run.sh: peers.py took $(($(date +%s) - start)) s (exit $status)" >&2
exit $status
