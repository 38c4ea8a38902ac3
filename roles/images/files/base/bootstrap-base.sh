#!/usr/bin/env bash
# Build the base image (a minimal Debian root file system) with debootstrap and
# import it into the local engine. Used when no container registry answers.
#   bootstrap-base.sh IMAGE SUITE MIRROR SECURITY_MIRROR
# Its apt sources name SUITE, SUITE-updates and SUITE-security (as the registry's
# images do), so every image build and refresh installs the security updates.
set -euo pipefail
image="$1" suite="$2" mirror="$3" security="$4"

if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap >/dev/null
fi

work="$(mktemp -d /var/tmp/psscript-debootstrap.XXXXXX)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

debootstrap --variant=minbase --include=ca-certificates "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  echo "debootstrap of $suite from $mirror failed" >&2
  exit 1
}

# Slim it like the -slim images: no docs, man pages, locales or apt lists, and
# keep them out of later package installs.
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$rootfs/etc/apt/apt.conf.d/01-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG
cat >"$rootfs/etc/apt/sources.list" <<LIST
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
LIST
rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/log/*.log "$rootfs"/tmp/*

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL io.psscript.apt-suites=\"$suite $suite-updates $suite-security\"" \
  --message "debootstrap $suite minbase" - "$image" >/dev/null
echo "imported $image from $mirror ($suite, security updates from $security)"
