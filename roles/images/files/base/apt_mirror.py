#!/usr/bin/env python3
"""Print the Debian mirrors this host's apt is configured with.

Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.list|*.sources (deb822)
and prints two lines: the first URI that serves the Debian archive itself (not the
security archive, not a third-party repository), then the URI of the security
archive (the host's own <suite>-security source; without one, the Debian layout's
<mirror>-security next to a .../debian mirror). Used to bootstrap debian:trixie-slim
with debootstrap when no container registry answers, so air-gapped sites that mirror
Debian can build the images, with security updates in the image's apt sources.
"""
import glob
import os
import sys

SECURITY_MARKERS = ("-security", "/debian-security")
DEBIAN_SUITES = ("bookworm", "trixie", "forky", "sid", "unstable", "testing", "stable", "bullseye")


def parse_one_line(text):
    """Entries of the one-line format: [(uri, suites, components)]."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        words = line.split()[1:]
        if words and words[0].startswith("["):
            # options block: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) < 2:
            continue
        entries.append((words[0], [words[1]], words[2:]))
    return entries


def parse_deb822(text):
    """Entries of the deb822 format (*.sources)."""
    entries = []
    for stanza in text.split("\n\n"):
        fields = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            entries.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return entries


def choose_mirror(entries):
    """The first URI that serves a Debian suite's main component, security archives excluded."""
    for uri, suites, components in entries:
        if any(marker in uri for marker in SECURITY_MARKERS):
            continue
        if any(s.endswith("-security") for s in suites):
            continue
        if "main" not in components:
            continue
        if not any(s.split("-")[0] in DEBIAN_SUITES for s in suites):
            continue
        return uri.rstrip("/")
    return None


def choose_security_mirror(entries, mirror):
    """The URI of the host's security archive; else <mirror>-security when the mirror is a .../debian."""
    for uri, suites, components in entries:
        if "main" in components and any(s.endswith("-security") for s in suites):
            return uri.rstrip("/")
    if mirror and mirror.rstrip("/").endswith("/debian"):
        return mirror.rstrip("/") + "-security"
    return None


def read_sources(root="/"):
    entries = []
    main = os.path.join(root, "etc/apt/sources.list")
    if os.path.exists(main):
        with open(main, encoding="utf-8") as handle:
            entries += parse_one_line(handle.read())
    for path in sorted(glob.glob(os.path.join(root, "etc/apt/sources.list.d/*"))):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if path.endswith(".list"):
            entries += parse_one_line(text)
        elif path.endswith(".sources"):
            entries += parse_deb822(text)
    return entries


def main():
    entries = read_sources(sys.argv[1] if len(sys.argv) > 1 else "/")
    mirror = choose_mirror(entries)
    if not mirror:
        sys.stderr.write(
            "no Debian mirror found in the apt sources of this host: "
            "set images_debian_mirror to the URL of a Debian archive mirror\n"
        )
        return 1
    security = choose_security_mirror(entries, mirror)
    if not security:
        sys.stderr.write(
            "no Debian security archive found in the apt sources of this host: "
            "set images_debian_security_mirror to the URL of a mirror of the security archive\n"
        )
        return 1
    print(mirror)
    print(security)
    return 0


if __name__ == "__main__":
    sys.exit(main())
