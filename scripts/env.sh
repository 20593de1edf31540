#!/usr/bin/env bash
# Create one of the project's environments once per lock-file hash, outside the clone:
#   scripts/env.sh ENV_DIR CACHE_DIR [LOCK [HOROVOD]]
# LOCK: requirements.lock (default, the pinned line) or requirements-dbr.lock (the
# Databricks Runtime 17.3 LTS ML line); HOROVOD: 1 (default) or 0 (that runtime has none).
# - a venv with LOCK installed exactly (--no-deps; nothing resolved), and LOCK copied into
#   it as requirements.lock (tests/test_stack.py checks the installed versions against it);
# - with HOROVOD=1, horovod 0.28.1 built from source once (Gloo, no MPI) with the C++17
#   toolchain fix, its wheel kept in CACHE_DIR/wheels;
# - Delta's jars fetched once into CACHE_DIR/jars/delta-<version> so Spark runs offline.
# A finished environment carries a .ready stamp; with it, this script returns at once.
set -euo pipefail
ENV_DIR=$1
CACHE_DIR=$2
HERE=$(cd "$(dirname "$0")/.." && pwd)
LOCK=$HERE/${3:-requirements.lock}
HOROVOD=${4:-1}
PYTHON=${MICROSEG_PYTHON:-python3.11}
DELTA_VERSION=$(sed -n 's/^delta-spark==//p' "$LOCK")
JARS_DIR="$CACHE_DIR/jars/delta-$DELTA_VERSION"

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.env.lock"
flock 9   # one builder at a time; others wait, then find it ready

if [ -f "$ENV_DIR/.ready" ] && [ -n "$(ls "$JARS_DIR"/*.jar 2>/dev/null)" ]; then
  exit 0
fi

start=$(date +%s)
if [ ! -f "$ENV_DIR/.ready" ]; then
  echo "env: creating $ENV_DIR (once per lock-file hash)"
  rm -rf "$ENV_DIR"
  "$PYTHON" -m venv "$ENV_DIR"
  "$ENV_DIR/bin/pip" install --quiet --no-deps --disable-pip-version-check -r "$LOCK"
  cp "$LOCK" "$ENV_DIR/requirements.lock"
fi

if [ ! -f "$ENV_DIR/.ready" ] && [ "$HOROVOD" = 1 ]; then
  TORCH=$("$ENV_DIR/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
  WHEELS="$CACHE_DIR/wheels/horovod-0.28.1-torch$TORCH-py311"
  if [ -z "$(ls "$WHEELS"/horovod-*.whl 2>/dev/null)" ]; then
    echo "env: building horovod 0.28.1 (Gloo, no MPI) against torch $TORCH; takes ~4 min once"
    mkdir -p "$WHEELS"
    PATH="$ENV_DIR/bin:$PATH" \
    CMAKE_TOOLCHAIN_FILE="$HERE/scripts/horovod-toolchain.cmake" \
    HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
      "$ENV_DIR/bin/pip" wheel --quiet --no-deps --no-build-isolation --no-cache-dir \
        --disable-pip-version-check -w "$WHEELS" horovod==0.28.1
  fi
  "$ENV_DIR/bin/pip" install --quiet --no-deps --disable-pip-version-check "$WHEELS"/horovod-*.whl
fi

if [ -z "$(ls "$JARS_DIR"/*.jar 2>/dev/null)" ]; then
  echo "env: fetching Delta $DELTA_VERSION jars once into $JARS_DIR"
  IVY="$CACHE_DIR/ivy-$DELTA_VERSION"
  "$ENV_DIR/bin/python" - "$DELTA_VERSION" "$IVY" <<'PY'
import sys
from pyspark.sql import SparkSession
version, ivy = sys.argv[1:]
spark = (SparkSession.builder.master("local[1]")
         .config("spark.jars.packages", f"io.delta:delta-spark_2.13:{version}")
         .config("spark.jars.ivy", ivy).config("spark.ui.enabled", "false").getOrCreate())
spark.stop()
PY
  mkdir -p "$JARS_DIR.tmp"
  cp "$IVY"/jars/*.jar "$JARS_DIR.tmp"/
  rm -rf "$JARS_DIR" && mv "$JARS_DIR.tmp" "$JARS_DIR"
fi

touch "$ENV_DIR/.ready"
echo "env: ready in $(( $(date +%s) - start )) s: $ENV_DIR"
