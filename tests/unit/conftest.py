# -*- coding: utf-8 -*-
"""Make ``ansible_collections.psscript.infra`` importable for pytest.

When the repository is not already checked out under an
``ansible_collections/psscript/infra`` tree, build one in a temporary
directory (a symlink to the repository root) and put it first on sys.path.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile


def _make_collection_importable():
    try:
        import ansible_collections.psscript.infra  # noqa: F401  pylint: disable=unused-import
        return
    except ImportError:
        pass
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tmp = tempfile.mkdtemp(prefix='psscript-infra-pytest-')
    namespace_dir = os.path.join(tmp, 'ansible_collections', 'psscript')
    os.makedirs(namespace_dir)
    os.symlink(repo_root, os.path.join(namespace_dir, 'infra'))
    atexit.register(shutil.rmtree, tmp, True)
    sys.path.insert(0, tmp)
    # Forget a half-failed import so the namespace packages are searched again.
    for name in list(sys.modules):
        if name == 'ansible_collections.psscript' or name.startswith('ansible_collections.psscript.'):
            del sys.modules[name]
    importlib.invalidate_caches()
    import ansible_collections.psscript.infra  # noqa: F401  pylint: disable=unused-import


_make_collection_importable()
