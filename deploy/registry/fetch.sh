#!/usr/bin/env bash
# Resolve Apicurio Registry (its Quarkus distribution, from Maven Central) into a local cache and print the
# directory holding its runner jar. The tests run it as a Confluent-API-compatible schema registry.
#
# Idempotent: a marker file records a complete unpack; a partial one is never used, since the archive is
# unpacked into a temporary directory that is renamed into place only after success.
#
#   CEM_CACHE_DIR   cache root (default: $HOME/.cache/cem)
set -euo pipefail

VERSION="3.0.9"
CACHE_ROOT="${CEM_CACHE_DIR:-$HOME/.cache/cem}"
DEST="$CACHE_ROOT/apicurio-registry-$VERSION"
MARKER="$DEST/.complete"
JAR="apicurio-registry-app-$VERSION-runner.jar"

if [[ -f "$MARKER" && -f "$DEST/app/$JAR" ]]; then
    echo "$DEST/app"
    exit 0
fi

command -v mvn >/dev/null 2>&1 || { echo "fetch.sh: mvn not found (apt-get install maven)" >&2; exit 1; }
mkdir -p "$DEST"
exec 9>"$DEST/.lock"
flock 9
if [[ -f "$MARKER" && -f "$DEST/app/$JAR" ]]; then
    echo "$DEST/app"
    exit 0
fi

TMP="$(mktemp -d "$DEST/app.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
mvn -q -B -Dstyle.color=never dependency:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" -DoutputDirectory="$TMP/archive" >&2
tar -xzf "$TMP/archive/apicurio-registry-app-$VERSION-all.tar.gz" -C "$TMP"
rm -rf "$TMP/archive"
[[ -f "$TMP/$JAR" ]] || { echo "fetch.sh: $JAR missing after unpacking" >&2; exit 1; }
rm -f "$MARKER"
rm -rf "$DEST/app"
mv "$TMP" "$DEST/app"
trap - EXIT
touch "$MARKER"
echo "$DEST/app"
