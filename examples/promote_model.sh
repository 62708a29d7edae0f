#!/usr/bin/env bash
# A model from commit to production: commit two versions with their
# evaluation results, tag, promote through staging to production behind the
# accuracy gate, publish every promotion to a GitOps repository, roll back.
#
#   ./examples/promote_model.sh         (builds first; store and git repository in a temporary directory)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/tests/deps.sh"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$root/build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
artifs="$root/build/cli/artifs"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ARTIFS_STORE=$work/store
export ARTIFS_AUTHOR="Ada <ada@example.org>"

# a fake model: weights and a config
mkdir -p "$work/model"
head -c 4M /dev/urandom >"$work/model/weights.bin"
echo '{"layers": 12}' >"$work/model/config.json"

set -x
"$artifs" init
"$artifs" create model classifier

# the GitOps repository that Argo CD or Flux would watch (here: a local bare repository)
git init -q --bare "$work/gitops.git"
"$artifs" config gitops.url "$work/gitops.git"
"$artifs" config gitops.author "artifs deploy <deploy@example.org>"

# the accuracy gate and a notifier, from hooks/examples
mkdir -p "$ARTIFS_STORE/hooks/pre-promote.d" "$ARTIFS_STORE/hooks/post-promote.d"
cp "$root/hooks/examples/pre-promote-accuracy-gate" "$ARTIFS_STORE/hooks/pre-promote.d/10-accuracy"
cp "$root/hooks/examples/post-promote-notify" "$ARTIFS_STORE/hooks/post-promote.d/50-notify"
echo 0.90 >"$ARTIFS_STORE/hooks/accuracy-threshold"

# v1: good enough
"$artifs" commit models/classifier "$work/model" -m "train run 1" --meta eval.accuracy=0.93
"$artifs" tag models/classifier v1
"$artifs" promote models/classifier v1 staging -m "candidate"
"$artifs" promote models/classifier staging production -m "first release"

# v2: worse; staging accepts it, the gate keeps it out of production
head -c 1M /dev/urandom | dd of="$work/model/weights.bin" bs=1M seek=1 conv=notrunc status=none
"$artifs" commit models/classifier "$work/model" -m "train run 2" --meta eval.accuracy=0.81
"$artifs" tag models/classifier v2
"$artifs" promote models/classifier v2 staging -m "try run 2"
if "$artifs" promote models/classifier staging production -m "ship run 2"; then
	echo "the gate should have refused v2" >&2
	exit 1
fi

# v3: better, but not yet in staging: refused until it has been there
"$artifs" commit models/classifier "$work/model" -m "train run 3" --meta eval.accuracy=0.95 --allow-empty
"$artifs" tag models/classifier v3
if "$artifs" promote models/classifier v3 production; then
	echo "the gate should have refused a version that skipped staging" >&2
	exit 1
fi
"$artifs" promote models/classifier v3 staging -m "run 3 looks good"
"$artifs" promote models/classifier staging production -m "ship run 3"

# an incident: back to the previous production version (v1)
"$artifs" rollback models/classifier production -m "latency regression"
"$artifs" envs models/classifier
"$artifs" history models/classifier
cat "$ARTIFS_STORE/hooks/promotions.log"

# what GitOps tools see
git --git-dir="$work/gitops.git" log --format='%h %an: %s' main
git --git-dir="$work/gitops.git" show main:environments/production/models/classifier.json
set +x
echo "promote_model: ok"
