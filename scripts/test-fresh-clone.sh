#!/usr/bin/env bash
# Clones HEAD into a fresh temporary directory with nothing beside it, so that a
# file the tests need but git does not track fails here, and runs there, with a
# target directory of its own and few seeds, the noted-check and noted-sim tests and every bench
# once in its quick mode (NOTED_BENCH_QUICK=1; benches are not run by cargo test
# otherwise). The benches are built with the test profile, as the tests are, so
# no release build is needed.
# NOTED_FRESH_CLONE_TARGET sets the target directory (default target/fresh-clone
# of this repository, kept between runs so that a second run only rebuilds noted).
set -euo pipefail
repository="$(cd "$(dirname "$0")/.." && pwd)"
target="${NOTED_FRESH_CLONE_TARGET:-$repository/target/fresh-clone}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
started=$(date +%s)

git clone --quiet --no-hardlinks "$repository" "$scratch/noted"
git -C "$scratch/noted" checkout --quiet --detach "$(git -C "$repository" rev-parse HEAD)"
echo "fresh clone: $(git -C "$scratch/noted" rev-parse --short HEAD) in $scratch/noted, alone in its folder:" \
  "$(ls -A "$scratch")"
cd "$scratch/noted"
export CARGO_TARGET_DIR="$target" NOTED_SIM_SEEDS="${NOTED_SIM_SEEDS:-8}" NOTED_BENCH_QUICK=1
cargo test --locked -p noted-check -p noted-sim --all-targets
# The bench by name: --benches would also build and run core's unit tests.
cargo test --locked -p noted-core --bench core
echo "fresh clone: passed in $(($(date +%s) - started)) s"
