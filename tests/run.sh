#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds the
# release binary the end-to-end tests start, and runs every test.
#
#   bash tests/run.sh
#
# Needs: cargo (Rust 1.88 or later), python3 with pip, apt-get (Debian) run as
# root or through sudo, and network access to crates.io, PyPI and Debian's
# archive. Installs: memcached and redis-server (the differential and
# comparison tests; the comparison also uses redis-benchmark), nutcracker
# (twemproxy, in front of a cluster), the binary-protocol clients (Dalli,
# php-memcached, libmemcached-tools), sasl2-bin (saslpasswd2, for memcached's
# SASL in the SASL test), prometheus (promtool, to lint the metrics
# endpoint), systemd and man-db (systemd-analyze verify of
# dist/mcstore.service, which also looks up its man page), and pymemcache.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

step "installing test dependencies (memcached, redis-server, nutcracker, the binary-protocol clients, prometheus, systemd and man-db from Debian; pymemcache from PyPI)"
# Debian packages and a command or file each provides.
packages=(
    "memcached:memcached"
    "redis-server:redis-server"
    "nutcracker:/usr/sbin/nutcracker"
    "ruby:ruby"
    "ruby-dalli:/usr/share/doc/ruby-dalli"
    "php-cli:php"
    "php-memcached:/usr/share/doc/php-memcached"
    "libmemcached-tools:memccapable"
    "sasl2-bin:/usr/sbin/saslpasswd2"
    "prometheus:promtool"
    "systemd:systemd-analyze"
    "man-db:man"
)
missing=()
for entry in "${packages[@]}"; do
    package=${entry%%:*}
    provides=${entry#*:}
    if [[ $provides == /* ]]; then
        [ -e "$provides" ] || missing+=("$package")
    else
        command -v "$provides" >/dev/null 2>&1 || missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
memcached -V
redis-server --version
ruby -e 'require "dalli"; puts "dalli #{Dalli::VERSION}"'
php -r 'echo "php-memcached ", phpversion("memcached"), "\n";'
promtool --version 2>&1 | head -1
systemd-analyze --version | head -1
if ! python3 -c 'import pymemcache' >/dev/null 2>&1; then
    python3 -m pip install --quiet pymemcache
fi
python3 -c 'import pymemcache; print("pymemcache", pymemcache.__version__)'

step "building the release binary the end-to-end tests start"
cargo build --release --locked -p mcstore-server
export MCSTORE_BIN="$PWD/target/release/mcstore"

step "unit, model, and end-to-end tests"
cargo test --workspace --locked --no-fail-fast

step "loom model of the connection/commit-pipeline hand-off"
cargo test --locked -p mcstore-storage --features loom-model --lib handoff
