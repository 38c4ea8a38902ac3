# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""stackctl: one command for every operation on a psscript stack.

The operator's verbs mapped onto the collection's playbooks and the Docker engine of each
instance, with the same inventory and secrets the deploy used. ``./stackctl`` (the repo root's
entry point) runs it under the repo's venv; ``python -m stackctl`` with ``cli/`` on the path too.

    args     the command line and which playbook each verb runs (pure)
    runner   running playbooks: progress, reported messages, a one-line error (-v: Ansible's output)
    stack    instances (playbooks/instances.yml), secrets (_secrets), Docker, the Redis master (_sentinel)
    main     the verbs and main()
"""

import os

# The repository (the collection) this package belongs to: cli/stackctl/ -> the repo root.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
