#!/usr/bin/env bash
# ansible-test sanity for the plugins, from a temporary ansible_collections/psscript/infra
# copy of the tracked files. Runs in its own venv (ansible-core only, plus the sanity
# requirements ansible-test installs), so its pinned linters never clash with ansible-lint's.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-sanity"
core_pin="$(grep -E '^ansible-core==' "$root/requirements.txt")"

if [ ! -x "$venv/bin/ansible-test" ] || ! "$venv/bin/python" -m pip show ansible-core 2>/dev/null | grep -q "Version: ${core_pin#ansible-core==}"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "$core_pin"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/psscript/infra"
mkdir -p "$dest"
# Tracked and new (not ignored) files, as they are in the working tree.
(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$dest")
cd "$dest"
git init -q && git add -A
"$venv/bin/ansible-test" sanity --requirements --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  --color no plugins/ "$@"
