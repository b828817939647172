#!/bin/sh
# mmdebstrap hook of scripts/build_images.py: runs on the build host with the image's
# root filesystem in $1, after the Debian packages are in it (the gateway's extract
# hook, the engine's customize hook). It
#   1. records the Debian package set (name=version) for the lock file and the SBOM,
#      and, where no dpkg ran (gateway), writes scanners' /var/lib/dpkg/status.d;
#   2. adds the non-root user, its home and the writable directories;
#   3. installs the wheelhouse's install set into /opt/appliance/venv with pip run
#      inside the root filesystem, then writes /opt/appliance as the app layer
#      (a reproducible tar) and removes it, so that the base layer leaves it out.
# Inputs come as IMAGE_* environment variables (mmdebstrap keeps the caller's);
# IMAGE_CONFIG_DIR (files for /etc/appliance) and IMAGE_BUILD_DEBS_OUT are optional.
set -eu
umask 022

root="$1"
: "${IMAGE_UID:?}" "${IMAGE_HOME:?}" "${IMAGE_WRITABLE:?}" "${IMAGE_INSTALL_SET:?}"
: "${IMAGE_WHEELHOUSE:?}" "${IMAGE_APP_TAR:?}" "${IMAGE_PACKAGES_OUT:?}" "${IMAGE_BUILD_DEBS:?}"
: "${SOURCE_DATE_EPOCH:?}"
venv=/opt/appliance/venv
# Downloads land in a root-only temporary directory: no _apt sandbox user.
apt_get() { APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get -q -o APT::Sandbox::User=root "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# -- 1. the Debian package set ------------------------------------------------------
if [ -s "$root/var/lib/dpkg/status" ]; then
    dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}=${Version}\n' \
        | LC_ALL=C sort > "$IMAGE_PACKAGES_OUT"
else
    # Extracted, not installed: list the archives apt fetched and give each a
    # status.d entry (as distroless images do) so that scanners find them.
    # IMAGE_EXTRACT_NO_DEPS: packages taken without their dependencies
    # (base-files, whose pre-dependency awk would be the only interpreter).
    for package in ${IMAGE_EXTRACT_NO_DEPS:-}; do
        (cd "$work" && apt_get download "$package" >/dev/null)
    done
    mkdir -p "$root/var/lib/dpkg/status.d"
    : > "$work/packages"
    for deb in "$root"/var/cache/apt/archives/*.deb "$work"/*.deb; do
        [ -e "$deb" ] || continue
        case "$deb" in "$work"/*)  # not extracted yet; /proc and /sys are mounted
            dpkg-deb --fsys-tarfile "$deb" \
                | tar -x -C "$root" --exclude=./proc --exclude=./sys --exclude=./dev ;;
        esac
        name=$(dpkg-deb --field "$deb" Package)
        dpkg-deb --field "$deb" > "$root/var/lib/dpkg/status.d/$name"
        echo "$name=$(dpkg-deb --field "$deb" Version)" >> "$work/packages"
    done
    LC_ALL=C sort "$work/packages" > "$IMAGE_PACKAGES_OUT"
    rm -f "$work"/*.deb
fi
# The host's files, copied in by mmdebstrap for debootstrap compatibility.
rm -f "$root/etc/resolv.conf" "$root/etc/hostname"

# -- 2. the user and its directories ------------------------------------------------
[ -e "$root/etc/passwd" ] || printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' > "$root/etc/passwd"
[ -e "$root/etc/group" ] || printf 'root:x:0:\n' > "$root/etc/group"
grep -q '^nogroup:' "$root/etc/group" || echo 'nogroup:x:65534:' >> "$root/etc/group"
grep -q '^nobody:' "$root/etc/passwd" \
    || echo 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >> "$root/etc/passwd"
echo "appliance:x:$IMAGE_UID:$IMAGE_UID:appliance:$IMAGE_HOME:/usr/sbin/nologin" >> "$root/etc/passwd"
echo "appliance:x:$IMAGE_UID:" >> "$root/etc/group"
mkdir -p "$root/tmp" "$root/var/tmp"
chmod 1777 "$root/tmp" "$root/var/tmp"
for dir in $IMAGE_WRITABLE; do
    [ "$dir" = /tmp ] && continue
    mkdir -p "$root$dir"
    chown "$IMAGE_UID:$IMAGE_UID" "$root$dir"
    chmod 0750 "$root$dir"
done
if [ -n "${IMAGE_CONFIG_DIR:-}" ]; then  # default configuration files
    mkdir -p "$root/etc/appliance"
    cp "$IMAGE_CONFIG_DIR"/* "$root/etc/appliance/"
    chmod 0644 "$root"/etc/appliance/*
fi

# -- 3. the venv, installed by pip inside the root filesystem -----------------------
# pip comes from Debian's python3-pip-whl (pinned), used here and not shipped.
(cd "$work" && apt_get download "$IMAGE_BUILD_DEBS" >/dev/null && dpkg-deb --extract ./*.deb pip)
# ... recorded as name=version (IMAGE_BUILD_DEBS may name it without a version).
for deb in "$work"/*.deb; do
    echo "$(dpkg-deb --field "$deb" Package)=$(dpkg-deb --field "$deb" Version)"
done > "${IMAGE_BUILD_DEBS_OUT:-/dev/null}"
pip_wheel=$(cd "$work/pip" && ls usr/share/python-wheels/pip-*.whl)
build="$root/tmp/appliance-build"
mkdir -p "$build/wheels"
cp "$work/pip/$pip_wheel" "$build/pip.whl"
cp -l "$IMAGE_WHEELHOUSE"/* "$build/wheels/" 2>/dev/null || cp "$IMAGE_WHEELHOUSE"/* "$build/wheels/"
in_root() {
    env -i PATH=/usr/bin:/bin HOME=/tmp LC_ALL=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 \
        PYTHONHASHSEED=0 SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" /usr/sbin/chroot "$root" "$@"
}
in_root /usr/bin/python3.11 -m venv --without-pip "$venv"
in_root "$venv/bin/python" /tmp/appliance-build/pip.whl/pip install --quiet \
    --no-index --no-deps --require-hashes --no-compile --no-cache-dir \
    --disable-pip-version-check --no-warn-script-location \
    --find-links /tmp/appliance-build/wheels \
    -r "/tmp/appliance-build/wheels/requirements-$IMAGE_INSTALL_SET.txt"
rm -rf "$build"
find "$root$venv" -depth -name __pycache__ -type d -exec rm -rf {} +

# The app layer: sorted, one timestamp, numeric root ownership, no atime/ctime.
tar --create --file "$IMAGE_APP_TAR" --directory "$root" \
    --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    ./opt/appliance
rm -rf "$root/opt/appliance"
