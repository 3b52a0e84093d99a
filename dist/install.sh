#!/usr/bin/env bash
# Installs mcstore: the binary and its man page, and with --systemd the
# unit, its system user and a config file.
#
#   bash dist/install.sh [--prefix DIR] [--systemd]
#
# --prefix: where bin/mcstore and share/man/man1/mcstore.1 go (default
# /usr/local; the unit expects /usr/local/bin/mcstore). Needs cargo; root
# (or sudo) for system paths.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local
systemd=false
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --systemd) systemd=true; shift ;;
        *) echo "usage: bash dist/install.sh [--prefix DIR] [--systemd]" >&2; exit 2 ;;
    esac
done
cargo install --locked --path server --root "$prefix"
mkdir -p "$prefix/share/man/man1"
"$prefix/bin/mcstore" --generate-man > "$prefix/share/man/man1/mcstore.1"
echo "installed $prefix/bin/mcstore and $prefix/share/man/man1/mcstore.1"
if $systemd; then
    install -D -m 0644 dist/mcstore.sysusers /usr/lib/sysusers.d/mcstore.conf
    systemd-sysusers /usr/lib/sysusers.d/mcstore.conf
    if [ ! -e /etc/mcstore/mcstore.toml ]; then
        install -D -m 0644 dist/mcstore.toml /etc/mcstore/mcstore.toml
    fi
    sed "s|/usr/local/bin/mcstore|$prefix/bin/mcstore|" dist/mcstore.service \
        > /etc/systemd/system/mcstore.service
    systemctl daemon-reload
    echo "installed the mcstore unit: systemctl enable --now mcstore"
fi
