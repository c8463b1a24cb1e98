#!/usr/bin/env bash
# Install (or upgrade) market-data-worker as a systemd service, from this checkout.
#
#   sudo systemd/install.sh            install or upgrade, enable, and (re)start the service
#   sudo systemd/install.sh --no-start install or upgrade and enable; start nothing
#
# What it puts where:
#   /opt/market-data-worker/venv       a venv made with $PYTHON (default /usr/bin/python3, 3.11 or newer),
#                                      holding this checkout and its dependencies from PyPI
#   /etc/market-data-worker/config.toml  only if absent: every default commented out (so: the defaults)
#   /etc/market-data-worker/env        only if absent: systemd/env.example, mode 0600 (secrets go here)
#   /etc/systemd/system/market-data-worker.service
# Existing config.toml and env are never overwritten; config.toml is validated on every run.
#
# The interpreter must live outside /home and /root: the unit's ProtectHome=yes hides
# both from the service (so a pyenv or conda Python under /root does not work).
#
# Uninstall: systemctl disable --now market-data-worker; rm -r /opt/market-data-worker
#   /etc/systemd/system/market-data-worker.service; systemctl daemon-reload
#   (state: /var/lib/private/market-data-worker; config and secrets: /etc/market-data-worker)
set -euo pipefail

PYTHON=${PYTHON:-/usr/bin/python3}
PREFIX=/opt/market-data-worker
ETC=/etc/market-data-worker
UNIT=market-data-worker.service
SRC=$(cd "$(dirname "$0")/.." && pwd)
START=yes

for arg in "$@"; do
    case "$arg" in
        --no-start) START=no ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it writes to /opt, /etc and /etc/systemd/system)"
[ -f "$SRC/setup.cfg" ] && [ -f "$SRC/systemd/$UNIT" ] || die "$SRC is not a market-data-worker checkout"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$PYTHON is not Python 3.11 or newer; set PYTHON=/path/to/python3.11 (Debian: apt-get install python3 python3-venv)"
case "$(readlink -f "$PYTHON")" in
    /home/*|/root/*) die "$PYTHON lives under /home or /root, which the service cannot see (ProtectHome=yes)" ;;
esac
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "$PYTHON cannot make venvs (Debian: apt-get install python3-venv)"

say "installing into $PREFIX/venv with $("$PYTHON" --version)"
install -d -m 0755 "$PREFIX"
"$PYTHON" -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/venv/bin/python" -m pip install --quiet --upgrade "$SRC"
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -d -m 0755 "$ETC"
if [ ! -e "$ETC/config.toml" ]; then
    say "writing $ETC/config.toml (the embedded defaults, commented out)"
    {
        echo "# market-data-worker: overrides of the embedded defaults, key by key."
        echo "# Uncomment and change what you need; check with:"
        echo "#   $PREFIX/venv/bin/mdwd --check-config $ETC/config.toml"
        echo "# then apply with: systemctl reload market-data-worker"
        echo "# (state_dir stays unset: the service uses its StateDirectory, /var/lib/market-data-worker)"
        echo "#"
        sed -e 's/^\(.\)/# \1/' -e 's/^$/#/' "$SRC/workers/default_config.toml"
    } > "$ETC/config.toml.new"
    chmod 0644 "$ETC/config.toml.new"
    mv "$ETC/config.toml.new" "$ETC/config.toml"
fi
"$PREFIX/venv/bin/mdwd" --check-config "$ETC/config.toml"
if [ ! -e "$ETC/env" ]; then
    say "writing $ETC/env from systemd/env.example (mode 0600; put MDW_API_TOKEN there)"
    install -m 0600 -o root -g root "$SRC/systemd/env.example" "$ETC/env"
fi

install -m 0644 "$SRC/systemd/$UNIT" "/etc/systemd/system/$UNIT"
if [ ! -d /run/systemd/system ]; then
    say "systemd is not running here: unit installed, nothing enabled or started"
    exit 0
fi
systemctl daemon-reload
systemctl enable --quiet "$UNIT"
if [ "$START" = yes ]; then
    say "restarting $UNIT (returns once every worker has beaten: READY=1)"
    systemctl restart "$UNIT"
    systemctl --no-pager status "$UNIT" | head -n 5
else
    say "$UNIT installed and enabled; start it with: systemctl start $UNIT"
fi
