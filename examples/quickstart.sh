#!/usr/bin/env bash
# The main job, end to end: install what is missing, build, create a store,
# commit the example dataset, read it back, change it, commit again, diff.
#
#   ./examples/quickstart.sh            store in a fresh temporary directory
#   ARTIFS_STORE=DIR ./examples/quickstart.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tests/deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
artifs="$root/build/cli/artifs"

work=$(mktemp -d)
cleanup() {
	# never leave a mount or a daemon behind
	if [ -d "$work/mnt" ] && grep -q " $work/mnt " /proc/self/mountinfo; then
		fusermount3 -u "$work/mnt" || fusermount3 -uz "$work/mnt" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
export ARTIFS_STORE=${ARTIFS_STORE:-$work/store}
data="$root/examples/data/flowers"

set -x
"$artifs" init
"$artifs" create dataset flowers || true
"$artifs" commit datasets/flowers "$data" -m "import flowers" --meta source=examples
"$artifs" tag datasets/flowers v1
"$artifs" ls -r datasets/flowers@v1
"$artifs" cat datasets/flowers@v1:labels.csv | head -5
"$artifs" checkout datasets/flowers@v1 "$work/checkout"
diff -r "$data" "$work/checkout"

# a second version: one more image and a relabel
cp -r "$data" "$work/v2"
cp "$data/train/rose/0000.png" "$work/v2/train/rose/0004.png"
echo "train/rose/0004.png,rose,train" >> "$work/v2/labels.csv"
"$artifs" commit datasets/flowers "$work/v2" -m "add one rose"
"$artifs" diff datasets/flowers@v1 datasets/flowers@main

# labels: versioned with the data, no file bytes stored again
"$artifs" label import datasets/flowers "$work/v2/labels.csv" -m "labels from labels.csv"
"$artifs" label stats datasets/flowers
"$artifs" ls datasets/flowers --label split=train --label label=rose
"$artifs" log datasets/flowers
"$artifs" du datasets/flowers
"$artifs" fsck

# every ref as a read-only directory
mkdir "$work/mnt"
"$artifs" mount "$work/mnt"
ls "$work/mnt/datasets/flowers"
diff -r "$data" "$work/mnt/datasets/flowers/v1"
# the generated .labels.jsonl is the one entry the source does not have
diff -r -x .labels.jsonl "$work/v2" "$work/mnt/datasets/flowers/main"
head -3 "$work/mnt/datasets/flowers/main/labels.csv"
head -2 "$work/mnt/datasets/flowers/main/.labels.jsonl"
# the train split, one directory per label: what torchvision's ImageFolder wants
find "$work/mnt/datasets/flowers/main/.labels/split=train/label" -type f | sort
"$artifs" umount "$work/mnt"
set +x
echo "quickstart: ok (store: $ARTIFS_STORE)"
