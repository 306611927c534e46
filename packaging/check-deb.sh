#!/usr/bin/env bash
# CI's check of the Debian package (.ci/run calls it): builds it with
# cargo-deb, lets lintian look for errors, then installs, upgrades, removes
# and purges it in a throwaway root (packaging/deb-root-checks.sh). It
# never touches this machine's clock, services or package database: the
# root is an overlay of / in a private mount namespace, chrooted, with an
# empty /run and a policy-rc.d that forbids starting anything.
#
#   packaging/check-deb.sh            # builds as `cargo deb` does for users
#   SUNDIAL_DEB_PROFILE=deb-ci packaging/check-deb.sh   # CI: a quicker build
#   SUNDIAL_DEB_NO_BUILD=1 packaging/check-deb.sh   # package the binary built last
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
build=(--profile "${SUNDIAL_DEB_PROFILE:-release}")
[ -n "${SUNDIAL_DEB_NO_BUILD:-}" ] && build+=(--no-build)

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
    echo "== installing cargo-deb $CARGO_DEB_VERSION"
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
if ! command -v lintian >/dev/null 2>&1; then
    echo "== installing lintian"
    export DEBIAN_FRONTEND=noninteractive
    # lintian starts no service, but keep the rule of scripts/test: no
    # package install may start one.
    policy=/usr/sbin/policy-rc.d
    created_policy=
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends lintian >/dev/null
    [ -n "$created_policy" ] && rm -f "$policy"
fi

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

echo "== cargo deb ${build[*]}"
start=$SECONDS
# cargo-deb prints the packages' paths on stdout (the -dbgsym .ddeb first),
# its progress on stderr.
deb=$(cargo deb -p sundial --locked "${build[@]}" | grep '\.deb$' | tail -n 1)
echo "cargo deb took $((SECONDS - start)) s: $deb"
[ -f "$deb" ] || { echo "check-deb: cargo deb made no package" >&2; exit 1; }
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"

echo "== lintian"
# Errors fail the check; warnings and notes are printed for a person.
lintian --fail-on error --display-info "$deb"

# The same package as a later version, to exercise the upgrade path.
dpkg-deb -R "$deb" "$work/unpacked"
version=$(dpkg-deb -f "$deb" Version)
sed -i "s/^Version: .*/Version: ${version}+upgrade/" "$work/unpacked/DEBIAN/control"
dpkg-deb -b --root-owner-group "$work/unpacked" "$work/upgrade.deb" >/dev/null
rm -rf "$work/unpacked"

echo "== install, upgrade, remove and purge in a throwaway root"
if [ "$(id -u)" -ne 0 ] || ! unshare -m true 2>/dev/null; then
    echo "check-deb: needs root and mount namespaces for the throwaway root" >&2
    exit 1
fi
mkdir -p "$work/upper" "$work/overlay-work" "$work/root"
cp "$deb" "$work/package.deb"
unshare -m --propagation private bash -euo pipefail -c '
    work=$1
    root=$work/root
    mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$root"
    mount -t tmpfs tmpfs "$root/run"
    mount -t tmpfs tmpfs "$root/tmp"
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    printf "#!/bin/sh\nexit 101\n" > "$root/usr/sbin/policy-rc.d"
    chmod +x "$root/usr/sbin/policy-rc.d"
    cp "$work/package.deb" "$work/upgrade.deb" packaging/deb-root-checks.sh "$root/tmp/"
    chroot "$root" /bin/sh /tmp/deb-root-checks.sh /tmp/package.deb /tmp/upgrade.deb
' check-deb "$work"
echo "== the Debian package is good"
