#!/usr/bin/env bash
# Install what is missing, build, and run every test: once in a normal
# build and once under AddressSanitizer + UBSan.  Exit status is non-zero
# if anything fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

bash "$root/tests/deps.sh"

run_suite() {
	local dir=$1
	shift
	# BUILD_TESTING on explicitly: the quickstart configures the same build dir without tests
	cmake -S "$root" -B "$dir" -DARTIFS_WERROR=ON -DBUILD_TESTING=ON "$@" >/dev/null
	cmake --build "$dir" -j "$jobs"
	(cd "$dir" && ctest --output-on-failure --timeout 1800)
}

echo "== release build and tests" >&2
run_suite "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo

echo "== ASan + UBSan build and tests" >&2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
LSAN_OPTIONS=suppressions=$root/tests/lsan.supp \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	run_suite "$root/build-asan" -DCMAKE_BUILD_TYPE=Debug -DARTIFS_SANITIZE=ON
