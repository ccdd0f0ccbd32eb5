#!/usr/bin/env bash
# Resolve the Apache Kafka broker jars (see pom.xml) into a local cache and print the libs dir.
#
# Idempotent: a marker file records a complete download; a partial download is never used
# because jars land in a temporary directory that is renamed into place only after success.
#
#   CEM_CACHE_DIR   cache root (default: $HOME/.cache/cem)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
KAFKA_VERSION="4.4.0"
CACHE_ROOT="${CEM_CACHE_DIR:-$HOME/.cache/cem}"
DEST="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS="$DEST/libs"
MARKER="$DEST/.complete"
# The marker stores a hash of the pom so that editing the pom triggers a re-resolve.
POM_HASH="$(sha256sum "$POM" | cut -d' ' -f1)"

if [[ -f "$MARKER" && -d "$LIBS" && "$(cat "$MARKER")" == "$POM_HASH" ]]; then
    echo "$LIBS"
    exit 0
fi

command -v mvn >/dev/null 2>&1 || { echo "fetch.sh: mvn not found (apt-get install maven)" >&2; exit 1; }

mkdir -p "$DEST"
# Serialise concurrent fetches (e.g. parallel test sessions) on a lock file.
exec 9>"$DEST/.lock"
flock 9

# Someone else may have finished while we waited for the lock.
if [[ -f "$MARKER" && -d "$LIBS" && "$(cat "$MARKER")" == "$POM_HASH" ]]; then
    echo "$LIBS"
    exit 0
fi

TMP="$(mktemp -d "$DEST/libs.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$TMP" >&2

if ! compgen -G "$TMP/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
    echo "fetch.sh: kafka_2.13-$KAFKA_VERSION.jar missing after resolve" >&2
    exit 1
fi

rm -f "$MARKER"
rm -rf "$LIBS"
mv "$TMP" "$LIBS"
trap - EXIT
echo "$POM_HASH" > "$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"
echo "$LIBS"
