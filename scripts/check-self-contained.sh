#!/usr/bin/env bash
# Fails, naming file and line, if a tracked file of the repository (or of the git
# work tree given as $1) refers to a path outside the clone: a sibling folder
# named shared, an absolute path under a home or work directory, or a relative path
# that climbs above the repository's root from where the file lives. Everything a
# test, bench, doc or script needs must be in the repository.
set -euo pipefail
root="${1:-$(dirname "$0")/..}"
cd "$root"

# Built from pieces so that this script does not match itself.
sibling='\.\./'"shared"
absolute='(^|[^A-Za-z0-9_.~-])/(work|home|root|Users)/'
problems=0

report() {
  echo "check-self-contained: $1" >&2
  problems=$((problems + 1))
}

while IFS= read -r -d '' file; do
  [[ -f "$file" ]] || continue
  # Binary files refer to no paths a reader follows.
  grep -Iq . "$file" 2>/dev/null || continue
  while IFS= read -r hit; do
    report "$file:$hit: refers to a folder beside the clone"
  done < <(grep -nE "$sibling" "$file" | cut -d: -f1)
  while IFS= read -r hit; do
    report "$file:$hit: refers to an absolute path outside the clone"
  done < <(grep -nE "$absolute" "$file" | cut -d: -f1)
  # A file at depth d (d folders above it inside the repository) may climb d levels.
  depth=$(($(tr -cd '/' <<<"$file" | wc -c)))
  while IFS=: read -r line climb; do
    levels=$(($(grep -o '\.\./' <<<"$climb" | wc -l)))
    if ((levels > depth)); then
      report "$file:$line: climbs $levels folders up from a file $depth deep: outside the clone"
    fi
  done < <(grep -noE '(\.\./)+' "$file" || true)
done < <(git ls-files -z)

if ((problems > 0)); then
  echo "check-self-contained: FAILED: $problems reference(s) to paths outside the repository;" \
    "a clone with nothing beside it must pass its tests, so keep every file they need inside it" >&2
  exit 1
fi
echo "check-self-contained: every tracked file refers only to paths inside the repository"
