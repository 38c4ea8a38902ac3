#!/usr/bin/env bash
# ansible-test sanity for the plugins, from a temporary ansible_collections/psscript/infra
# copy of the tracked files. Runs in its own venv (ansible-core only, plus the sanity
# requirements ansible-test installs), so its pinned linters never clash with ansible-lint's.
# Needs only the repo, python3 with venv/ensurepip and the package index: no cache in $HOME.
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

python_version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

# ansible-test keeps its sanity venvs and caches under ~/.ansible/test. HOME points at a
# project-local directory (ignored by git, kept out of the build by galaxy.yml's .cache) so it
# neither reads nor writes the operator's home: nothing found there can hide a missing step.
# pip still honours PIP_* variables and /etc/pip.conf; ~/.config/pip is not read.
test_home="$root/.cache/ansible-test-home"

# ansible-test creates each sanity venv without pip, then runs
# ~/.ansible/test/cache/get_pip_<version>.py, downloading it first, when missing, from a host
# outside the package registries. We put scripts/ansible-test-bootstrap-pip.py at that path: it
# installs the same pins from ensurepip and the package index. Chosen over pre-building the venvs
# ourselves because this cache file is the one hook ansible-test itself offers (its download
# error says to save the script there), while its venv layout (per-test hashed paths, marker
# files) is private and changes between releases. The pip version names the file: it is read
# from ansible-test's own table, so a core bump cannot leave a stale name behind (that function
# is private too: if it moves, this stops here with a message instead of trying the download).
pip_version="$("$venv/bin/python" - "$python_version" <<'PY'
import sys, types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version=sys.argv[1]))['pip'])
PY
)" || { echo "sanity.sh: cannot read the pip version ansible-test bootstraps; see scripts/ansible-test-bootstrap-pip.py" >&2; exit 1; }
install -D -m 0644 "$root/scripts/ansible-test-bootstrap-pip.py" \
  "$test_home/.ansible/test/cache/get_pip_${pip_version//./_}.py"

HOME="$test_home" "$venv/bin/ansible-test" sanity --requirements --python "$python_version" \
  --color no plugins/ "$@"
