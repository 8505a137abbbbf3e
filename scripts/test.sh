#!/usr/bin/env bash
# Runs every test of noted: first that the repository is self-contained (no file
# refers to a path outside the clone), then formatting, lints, unit, simulation and
# end-to-end tests, a fresh clone's simulation tests and quick benches
# (scripts/test-fresh-clone.sh), and the web page in headless Chromium.
# Installs what is missing first, so it works alone on a fresh machine.
# NOTED_SKIP_BROWSER=1 skips the browser test, explicitly; without it a machine
# where Chromium cannot be installed fails the run.
# NOTED_SKIP_CHAOS=1 skips the chaos test (tests/tests/chaos.rs), explicitly; it
# needs root, ip and iptables, and without them fails the run and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/check-self-contained.sh
bash scripts/check-self-contained.test.sh

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Debian's package puts it here; CHROMIUM overrides (tests/browser reads it too).
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

# Installs Debian packages when running as root with apt-get; otherwise does nothing.
apt_install() {
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

prepare_browser_test() {
  [[ -x "$CHROMIUM" ]] || apt_install chromium
  if [[ ! -x "$CHROMIUM" ]]; then
    echo "browser test: FAILED: Chromium is not at $CHROMIUM and could not be installed" \
      "(that needs root and apt-get: apt-get install chromium). Set NOTED_SKIP_BROWSER=1 to skip it explicitly." >&2
    exit 1
  fi
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  if ! command -v npm >/dev/null 2>&1; then
    echo "browser test: FAILED: Node.js and npm are needed to drive Chromium. Set NOTED_SKIP_BROWSER=1 to skip it explicitly." >&2
    exit 1
  fi
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
}

if [[ "${NOTED_SKIP_BROWSER:-}" == 1 ]]; then
  echo "browser test: skipped because NOTED_SKIP_BROWSER=1"
else
  prepare_browser_test
fi

if [[ "${NOTED_SKIP_CHAOS:-}" == 1 ]]; then
  echo "chaos test: skipped because NOTED_SKIP_CHAOS=1"
else
  # The chaos test partitions replicas with iptables inside its own network namespace.
  command -v iptables >/dev/null 2>&1 || apt_install iptables
  command -v ip >/dev/null 2>&1 || apt_install iproute2
fi

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
bash scripts/test-fresh-clone.sh

if [[ "${NOTED_SKIP_BROWSER:-}" != 1 ]]; then
  cargo build --locked --quiet -p noted-server --bin noted
  # The script stops its cluster and browser itself; the timeout is a last resort.
  timeout --kill-after=10 180 node tests/browser/two-pages.mjs
fi
