#!/usr/bin/env python3
"""Put pip into a new ansible-test sanity venv from ensurepip and the package index.

ansible-test creates every sanity virtualenv without pip, then runs the bootstrap script
``~/.ansible/test/cache/get_pip_<version>.py`` with the venv's Python; when that file is missing
it downloads it first from a host outside the package registries, which a new machine here
cannot reach. scripts/sanity.sh copies this file to that path, so ansible-test uses it instead.

It does what the original does with the same arguments (ansible-test passes e.g.
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``):

1. pip from the Python's own ``ensurepip`` (bundled wheels; python3-venv on Debian), offline;
2. ``pip install --upgrade --force-reinstall <arguments> pip`` from the package index, plus
   setuptools and wheel when they are absent and not excluded (the original's rule), so the venv
   ends with exactly the versions ansible-test pinned;
3. removes what ensurepip brought that the original would not install (Python 3.11's ensurepip
   also installs setuptools): the venv holds what ansible-test asked for, nothing more.
"""

import importlib.util
import subprocess
import sys

EXCLUDE_FLAGS = {'--no-setuptools': 'setuptools', '--no-wheel': 'wheel'}


def run(*args, quiet=False):
    """Run this Python with args; on failure show its output and exit with its code."""
    result = subprocess.run([sys.executable] + list(args), capture_output=quiet, text=True, check=False)
    if result.returncode != 0:
        if quiet:
            sys.stderr.write(result.stdout + result.stderr)
        sys.stderr.write('ansible-test-bootstrap-pip: %s failed (exit %d)\n' % (' '.join(args), result.returncode))
        sys.exit(result.returncode)


def main():
    """Bootstrap pip as the original script would, from what this machine can reach."""
    argv = sys.argv[1:]
    excluded = {EXCLUDE_FLAGS[arg] for arg in argv if arg in EXCLUDE_FLAGS}
    pip_args = [arg for arg in argv if arg not in EXCLUDE_FLAGS]
    # Before ensurepip, which may bring setuptools along: the original adds a tool only when absent.
    absent = [name for name in ('setuptools', 'wheel') if importlib.util.find_spec(name) is None]
    wanted = [name for name in absent if name not in excluded and sys.version_info < (3, 12)]

    run('-m', 'ensurepip', quiet=True)
    run('-m', 'pip', 'install', '--upgrade', '--force-reinstall', *pip_args, 'pip', *wanted)

    importlib.invalidate_caches()
    brought_along = [name for name in absent if name not in wanted and importlib.util.find_spec(name) is not None]
    if brought_along:
        run('-m', 'pip', 'uninstall', '--yes', '--quiet', '--disable-pip-version-check', *brought_along)


if __name__ == '__main__':
    main()
