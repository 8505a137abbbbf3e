#!/usr/bin/env bash
# Tests scripts/check-self-contained.sh on throw-away git repositories: it passes a
# repository whose files stay inside it and fails, naming the file, on one that
# refers to the sibling folder shared, to an absolute home path, or climbs above
# its root. Paths that climb are built from pieces, so that this file passes the check.
set -euo pipefail
check="$(cd "$(dirname "$0")" && pwd)/check-self-contained.sh"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0

# A repository in $scratch/$1 holding file $2 with text $3, committed.
repository() {
  local directory="$scratch/$1"
  mkdir -p "$directory/$(dirname "$2")"
  git -C "$directory" init -q
  printf '%s\n' "$3" >"$directory/$2"
  git -C "$directory" add -A
  directory_of_last="$directory"
}

expect() { # expect pass|fail NAME FILE TEXT [MESSAGE]
  local outcome=$1 name=$2
  repository "$name" "$3" "$4"
  if output=$(bash "$check" "$directory_of_last" 2>&1); then status=pass; else status=fail; fi
  if [[ $status == "$outcome" ]] && { [[ -z "${5:-}" ]] || grep -qF -- "$5" <<<"$output"; }; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "check-self-contained test: $name: expected $outcome${5:+ saying \"$5\"}, got $status:" >&2
    echo "$output" >&2
  fi
}

up="../"
sibling="$up""shared"
expect pass inside 'sim/src/lib.rs' 'let data = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/a.jsonl");'
expect pass climbs-within 'sim/src/checker/tests.rs' "let data = \"$up${up}testdata/a.jsonl\";"
expect fail sibling-folder 'sim/src/history.rs' "let data = \"$sibling/data/a.jsonl\";" \
  'sim/src/history.rs:1: refers to a folder beside the clone'
expect fail sibling-in-docs 'README.md' "Copy $sibling/data first." 'README.md:1: refers to a folder beside the clone'
expect fail absolute-home 'scripts/run.sh' 'cat /''home/someone/data.jsonl' 'scripts/run.sh:1: refers to an absolute path'
expect fail climbs-out 'sim/benches/checker.rs' "let data = \"$up$up${up}data/a.jsonl\";" \
  'sim/benches/checker.rs:1: climbs 3 folders up from a file 2 deep'

echo "check-self-contained test: $passed passed, $failed failed"
((failed == 0))
