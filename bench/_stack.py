"""Shared helpers for the benchmark scripts: read the deployed stack's facts."""
import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def inventory(inventory_path):
    """{instance: hostvars} for the instances of an inventory, as ansible-inventory reports them."""
    out = subprocess.run(
        [os.path.join(ROOT, ".venv", "bin", "ansible-inventory"), "-i", inventory_path, "--list"],
        check=True, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    data = json.loads(out)
    return data["_meta"]["hostvars"], data


def secrets(stack_name, path=None):
    path = path or os.path.expanduser("~/.config/psscript/%s/secrets.yml" % stack_name)
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def app_env(stack_name, path=None):
    """The application's settings (app.env: NAME=value lines) the stack wrote for its clients."""
    path = path or os.path.expanduser("~/.config/psscript/%s/app.env" % stack_name)
    with open(path, encoding="utf-8") as handle:
        return dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line and not line.startswith("#"))


def address(subnet, index):
    """An instance's static address, computed the way the roles compute it."""
    # The repo is the collection; `make collection` links it under .cache/collections.
    sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))
    try:
        from ansible_collections.psscript.infra.plugins.module_utils._network import instance_address
    except ImportError:
        raise SystemExit("the collection is not linked under .cache/collections: run `make collection`")
    return instance_address(subnet, index)
