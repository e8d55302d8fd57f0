#!/bin/bash
# Installs, upgrades, removes and purges a realtime-voiced package on a throwaway copy of this
# machine: inside a private mount namespace, /etc, /usr and /var are overlays whose changes are
# dropped on exit. Needs root (run by packaging/check-deb.sh for the host's architecture).
#
#   unshare -m --propagation private packaging/install-test.sh package.deb scratch-dir
set -euo pipefail
DEB=$1
SCRATCH=$2
UNIT=realtime-voiced.service

for d in etc usr var; do
    mkdir -p "$SCRATCH/$d-up" "$SCRATCH/$d-work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$SCRATCH/$d-up,workdir=$SCRATCH/$d-work" "/$d"
done

FAILED=0
expect() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then printf 'ok   %s\n' "$what"; else printf 'FAIL %s\n' "$what"; FAILED=1; fi
}
# shellcheck disable=SC2317 # called through expect
enabled_links() { find /etc/systemd/system -name "$UNIT" -path '*.wants/*' 2>/dev/null | grep -q .; }

# A machine that has never seen the package, with Raspberry Pi OS's gpio group.
dpkg -P realtime-voiced >/dev/null 2>&1 || true
userdel realtime-voiced 2>/dev/null || true
for g in realtime-voiced realtime-voice; do groupdel "$g" 2>/dev/null || true; done
getent group gpio >/dev/null || groupadd --system gpio

dpkg -i "$DEB" >"$SCRATCH/install.log" 2>&1 || { cat "$SCRATCH/install.log"; exit 1; }
expect "install tells how to enable the service" grep -q "systemctl enable --now realtime-voiced" "$SCRATCH/install.log"
expect "install creates the system user" getent passwd realtime-voiced
expect "its home is /var/lib/realtime-voiced, no login shell" \
    sh -c 'getent passwd realtime-voiced | grep -q ":/var/lib/realtime-voiced:/usr/sbin/nologin$"'
expect "the user is in audio" sh -c 'id -nG realtime-voiced | grep -qw audio'
expect "the user is in gpio" sh -c 'id -nG realtime-voiced | grep -qw gpio'
expect "install creates the group realtime-voice" getent group realtime-voice
expect "install enables nothing" sh -c "! find /etc/systemd/system -name $UNIT | grep -q ."
expect "config.toml is a conffile" grep -qx /etc/realtime-voiced/config.toml /var/lib/dpkg/info/realtime-voiced.conffiles

# The user enables it (offline, as in an image build), edits the configuration, then upgrades.
systemctl enable "$UNIT" >/dev/null 2>&1
echo "# edited" >>/etc/realtime-voiced/config.toml
dpkg -i "$DEB" >"$SCRATCH/upgrade.log" 2>&1 || { cat "$SCRATCH/upgrade.log"; exit 1; }
expect "an upgrade keeps the user's enablement" enabled_links
expect "an upgrade keeps the edited configuration" grep -qx "# edited" /etc/realtime-voiced/config.toml

dpkg -r realtime-voiced >/dev/null 2>&1
expect "remove keeps the configuration" test -f /etc/realtime-voiced/config.toml
expect "remove keeps the user" getent passwd realtime-voiced

mkdir -p /var/lib/realtime-voiced && touch /var/lib/realtime-voiced/state /etc/realtime-voiced/api-key
dpkg -P realtime-voiced >/dev/null 2>&1
expect "purge removes /etc/realtime-voiced" test ! -e /etc/realtime-voiced
expect "purge removes /var/lib/realtime-voiced" test ! -e /var/lib/realtime-voiced
expect "purge removes the enablement" sh -c "! find /etc/systemd/system -name $UNIT | grep -q ."
expect "purge removes the user" sh -c '! getent passwd realtime-voiced'
expect "purge removes the groups" sh -c '! getent group realtime-voice && ! getent group realtime-voiced'
exit "$FAILED"
