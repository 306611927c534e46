#!/bin/sh
# Runs inside the throwaway root that packaging/check-deb.sh makes (an
# overlay of the machine's own / in a private mount namespace, chrooted):
# installs the package (apt install, as docs/operations.md does), upgrades
# it the same way, removes and purges it, and checks each
# step. Nothing here reaches the real system: every write lands in the
# overlay, /run is an empty tmpfs (no systemd to talk to), and policy-rc.d
# forbids every service start.
#   deb-root-checks.sh PACKAGE.deb UPGRADE.deb
set -eu
deb=$1
upgrade=$2
fail() { echo "check-deb: $*" >&2; exit 1; }
installed() { [ "$(dpkg-query -W -f '${db:Status-Status}' sundial 2>/dev/null)" = installed ]; }
# As docs/operations.md installs and upgrades: `apt install ./sundial_*.deb`
# (apt resolves the dependencies from what is installed; nothing is
# downloaded). dpkg where the root has no apt.
apt_install() {
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$1" </dev/null
    else
        dpkg -i "$1" </dev/null
    fi
}

[ -x /usr/sbin/policy-rc.d ] || fail "no policy-rc.d guard in the throwaway root"
[ ! -d /run/systemd/system ] || fail "/run/systemd/system exists: not a throwaway root"

# Another time daemon (the interop tests install chrony): the package must
# refuse to be installed beside it, as chrony and ntpsec do.
for other in chrony ntp ntpsec openntpd systemd-timesyncd; do
    if dpkg-query -W -f '${db:Status-Status}' "$other" 2>/dev/null | grep -qx installed; then
        echo "== $other is installed: the package must conflict with it"
        if dpkg -i "$deb" </dev/null >/tmp/conflict.log 2>&1; then
            fail "installed beside $other"
        fi
        grep -q "conflicts with time-daemon" /tmp/conflict.log || { cat /tmp/conflict.log; fail "refused, but not for time-daemon"; }
        dpkg --purge "$other" </dev/null >/dev/null
    fi
done

echo "== install"
apt_install "$deb"
installed || fail "not installed"
for path in \
    /usr/bin/sundial \
    /usr/lib/systemd/system/sundial.service \
    /usr/lib/sysusers.d/sundial.conf \
    /usr/lib/tmpfiles.d/sundial.conf \
    /etc/sundial/ntp.toml \
    /usr/share/man/man8/sundial.8.gz \
    /usr/share/man/man5/ntp.toml.5.gz \
    /usr/share/bash-completion/completions/sundial \
    /usr/share/zsh/vendor-completions/_sundial \
    /usr/share/fish/vendor_completions.d/sundial.fish \
    /usr/share/doc/sundial/copyright \
    /usr/share/doc/sundial/changelog.Debian.gz \
    /usr/share/doc/sundial/operations.md \
    /usr/share/doc/sundial/config.md \
    /usr/share/doc/sundial/grafana-dashboard.json \
    /usr/share/doc/sundial/examples/nts-server.toml
do
    [ -e "$path" ] || fail "$path is missing"
done
dpkg-query -W -f '${Conffiles}\n' sundial | grep -q '^ /etc/sundial/ntp.toml ' \
    || fail "/etc/sundial/ntp.toml is not a conffile"
for field in Provides Conflicts Replaces; do
    dpkg-query -W -f "\${$field}\n" sundial | grep -qx time-daemon || fail "$field is not time-daemon"
done
getent passwd sundial >/dev/null || fail "postinst did not create the user sundial"
[ -L /etc/systemd/system/multi-user.target.wants/sundial.service ] || fail "the unit is not enabled"
[ ! -e /run/sundial ] || fail "the daemon was started"
sundial --version
sundial validate -c /etc/sundial/ntp.toml
sundial validate   # the default path is the shipped file
man -w sundial >/dev/null 2>&1 || ! command -v man >/dev/null || fail "man sundial finds no page"
man -w 5 ntp.toml >/dev/null 2>&1 || ! command -v man >/dev/null || fail "man 5 ntp.toml finds no page"

echo "== upgrade keeps a changed config and the key storage"
echo "# changed by the administrator" >> /etc/sundial/ntp.toml
mkdir -p /var/lib/sundial
echo "keys" > /var/lib/sundial/ntskeys
apt_install "$upgrade"
[ "$(dpkg-query -W -f '${Version}' sundial)" = "$(dpkg-deb -f "$upgrade" Version)" ] || fail "not upgraded"
grep -q "changed by the administrator" /etc/sundial/ntp.toml || fail "the upgrade replaced a changed config"
[ "$(cat /var/lib/sundial/ntskeys)" = keys ] || fail "the upgrade lost the key storage"
sundial validate -c /etc/sundial/ntp.toml

echo "== remove keeps the config and the state; purge removes both"
dpkg -r sundial </dev/null
[ ! -e /usr/bin/sundial ] || fail "remove left /usr/bin/sundial"
[ -e /etc/sundial/ntp.toml ] || fail "remove took the config"
[ -e /var/lib/sundial/ntskeys ] || fail "remove took the key storage"
dpkg -P sundial </dev/null
! installed || fail "still installed after purge"
[ ! -e /etc/sundial ] || fail "purge left /etc/sundial"
[ ! -e /var/lib/sundial ] || fail "purge left /var/lib/sundial"
[ ! -e /etc/systemd/system/multi-user.target.wants/sundial.service ] || fail "purge left the unit enabled"
echo "== the package installs, upgrades, removes and purges cleanly"
