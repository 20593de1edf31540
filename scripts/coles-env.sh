#!/usr/bin/env bash
# Optional extra for the evaluation's self-supervised peer (CoLES, pytorch-lifestream):
#   scripts/coles-env.sh            -> prints the folder to put on PYTHONPATH after lib:
#   PYTHONPATH=lib:$(scripts/coles-env.sh) $B -m pytest tests/test_coles.py
# Installs requirements-coles.lock with the core env's pip, --no-deps, into
# $MICROSEG_CACHE/extras/coles-<sha256(requirements-coles.lock)[:12]>, once per hash:
# built in a temp folder, then renamed, so a half-built folder is never used. The core env
# (torch, numpy, pandas, pyarrow, ...) is left untouched and is not duplicated in the folder.
# The core env's python is $B if set, else the one `make env-path` names (build it first).
# Only the folder is printed on stdout; progress goes to stderr.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
LOCK="$HERE/requirements-coles.lock"
CACHE_DIR=${MICROSEG_CACHE:-$HOME/.cache/microseg}
B=${B:-$(make -s -C "$HERE" env-path)/bin/python}
HASH=$(sha256sum "$LOCK" | cut -c1-12)
DEST="$CACHE_DIR/extras/coles-$HASH"

if [ ! -d "$DEST" ]; then
  [ -x "$B" ] || { echo "coles-env: core env python not found at $B (run: make env)" >&2; exit 1; }
  mkdir -p "$CACHE_DIR/extras"
  exec 9>"$CACHE_DIR/extras/.coles.lock"
  flock 9   # one builder at a time; others wait, then find it done
  if [ ! -d "$DEST" ]; then
    start=$(date +%s)
    echo "coles-env: installing requirements-coles.lock into $DEST (once per lock-file hash)" >&2
    TMP=$(mktemp -d "$DEST.tmp.XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    # --no-build-isolation: the two sdists (pytorch-lifestream, antlr4) build with the core
    # env's pinned setuptools/wheel instead of whatever is newest.
    "$B" -m pip install --quiet --no-deps --no-build-isolation --disable-pip-version-check \
      --no-warn-script-location --target "$TMP" -r "$LOCK" >&2
    for pkg in torch numpy pandas pyarrow sklearn scipy; do   # --no-deps guard
      if [ -e "$TMP/$pkg" ]; then echo "coles-env: $pkg leaked into the extra" >&2; exit 1; fi
    done
    mv -T "$TMP" "$DEST"
    trap - EXIT
    echo "coles-env: ready in $(( $(date +%s) - start )) s" >&2
  fi
fi
echo "$DEST"
