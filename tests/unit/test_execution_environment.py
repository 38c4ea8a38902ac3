# -*- coding: utf-8 -*-
"""execution-environment.yml through ansible-builder, offline.

`ansible-builder create` writes the build context that AWX's execution environment is built from.
This checks the context without building an image (no engine, no registry, no network: the runs get
an HTTP proxy on a closed loopback port, so any download would fail):
- the definition passes ansible-builder's v3 schema (a key the schema lacks is the control);
- every stage of the Containerfile starts from the EE_BASE_IMAGE build argument, whose default is the
  base image the definition names, or from an earlier stage;
- the files the definition lists are in _build/ as they are in the repo, and the collection's tarball
  is there and installed;
- the Python requirements cover every library the collection's plugins import (psycopg2, redis, boto3);
- no image reference with a registry host anywhere in the context, the collection's tarball included
  (a base image named with a host is the control).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
EE_FILE = os.path.join(REPO, "execution-environment.yml")
# Where ansible-builder v3 puts each kind of dependency file in the context.
CONTEXT_NAMES = {"python": "requirements.txt", "galaxy": "requirements.yml", "system": "bindep.txt"}
# The libraries the modules check for before they run (HAS_PSYCOPG2, HAS_REDIS, HAS_BOTO3).
MODULE_LIBRARIES = {"psycopg2": "psycopg2-binary", "redis": "redis", "boto3": "boto3"}
# An image reference that names a registry: a host (with a dot or a port, or localhost) and a
# repository path with a letter in it (a CIDR such as 172.25.0.0/16 has none), not inside a URL,
# a path or an address.
REGISTRY_REFERENCE = re.compile(
    r"(?<![\w.:/@-])(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::[0-9]+)?/[a-z0-9._-]*[a-z][a-z0-9._/-]*", re.IGNORECASE)


def _env():
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = "http://127.0.0.1:9"
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    return env


def _run(argv, cwd):
    result = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _definition():
    with open(EE_FILE, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _create(workdir, definition_text):
    """ansible-builder create on a copy of the definition, with the files it lists and the collection's tarball."""
    src = workdir / "src"
    src.mkdir()
    (src / "execution-environment.yml").write_text(definition_text, encoding="utf-8")
    for value in yaml.safe_load(definition_text)["dependencies"].values():
        if isinstance(value, str) and os.path.isfile(os.path.join(REPO, value)):
            shutil.copy(os.path.join(REPO, value), src / value)
    _run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path", str(src), REPO], cwd=src)
    _run([os.path.join(BIN, "ansible-builder"), "create", "--file", "execution-environment.yml",
          "--context", str(workdir / "context"), "--output-filename", "Containerfile"], cwd=src)
    return workdir / "context"


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    with open(EE_FILE, encoding="utf-8") as handle:
        return _create(tmp_path_factory.mktemp("ee"), handle.read())


def _has_registry(reference):
    first = reference.split("/")[0]
    return "/" in reference and ("." in first or ":" in first or first == "localhost")


def _base_images(containerfile):
    """The images the stages start from (build arguments resolved to their defaults), and the problems."""
    defaults, stages, images, problems = {}, set(), [], []
    for line in containerfile.splitlines():
        arg = re.match(r'ARG (\w+)="?([^"]*)"?$', line)
        if arg:
            defaults.setdefault(arg.group(1), arg.group(2))
        start = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if start:
            source, alias = start.groups()
            if source not in stages:
                if source != "$EE_BASE_IMAGE":
                    problems.append("a stage starts from %s, not from $EE_BASE_IMAGE" % source)
                images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), m.group(0)), source))
            stages.add(alias)
        copy_from = re.search(r"COPY\s+--from=(\S+)", line)
        if copy_from and copy_from.group(1) not in stages:
            problems.append("COPY --from=%s is not an earlier stage" % copy_from.group(1))
    return images, problems


def _registry_references(context):
    """(file, reference) for each image reference with a registry host in the context's files."""
    found = []
    for dirpath, _, files in os.walk(context):
        for name in files:
            path = os.path.join(dirpath, name)
            if tarfile.is_tarfile(path):
                with tarfile.open(path) as archive:
                    texts = [(path + ":" + m.name, archive.extractfile(m).read()) for m in archive.getmembers() if m.isfile()]
            else:
                with open(path, "rb") as handle:
                    texts = [(path, handle.read())]
            for where, data in texts:
                if b"\0" not in data:
                    found.extend((where, ref) for ref in REGISTRY_REFERENCE.findall(data.decode("utf-8", "replace")))
    return found


def _third_party_imports():
    """Top-level modules the plugins import that are neither the standard library nor Ansible."""
    names = set()
    for dirpath, _, files in os.walk(os.path.join(REPO, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        names.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("ansible", "ansible_collections")}


def _with_dependencies(names):
    """The distributions and everything they install (this venv's metadata: requirements.txt is installed here)."""
    seen, todo = set(), list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo.extend(r.name for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": ""}))
    return seen


def test_definition_matches_the_v3_schema(tmp_path):
    from ansible_builder.exceptions import DefinitionError
    from ansible_builder.user_definition import UserDefinition

    definition = UserDefinition(EE_FILE)
    definition.validate()
    assert definition.version == 3
    raw = _definition()
    raw["images"]["builder_image"] = {"name": "x"}
    bad = tmp_path / "execution-environment.yml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    for name in CONTEXT_NAMES.values():
        if os.path.isfile(os.path.join(REPO, name)):
            shutil.copy(os.path.join(REPO, name), tmp_path / name)
    with pytest.raises(DefinitionError):
        UserDefinition(str(bad)).validate()


def test_every_stage_starts_from_the_base_image_argument(context):
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    images, problems = _base_images(containerfile)
    assert problems == []
    assert images == [_definition()["images"]["base_image"]["name"]]
    assert not _has_registry(images[0])
    assert 'ARG EE_BASE_IMAGE="%s"' % images[0] in containerfile


def test_the_listed_files_are_in_the_context(context):
    definition = _definition()
    for kind, value in definition["dependencies"].items():
        if kind not in CONTEXT_NAMES:
            continue
        built = (context / "_build" / CONTEXT_NAMES[kind]).read_text(encoding="utf-8")
        if isinstance(value, str):
            with open(os.path.join(REPO, value), encoding="utf-8") as handle:
                assert built == handle.read(), kind
        else:
            assert built.splitlines() == value, kind
    for extra in definition["additional_build_files"]:
        copied = os.listdir(context / "_build" / extra["dest"])
        assert len(copied) == 1 and fnmatch.fnmatch(copied[0], os.path.basename(extra["src"])), copied
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    assert re.search(r"(?m)^RUN ansible-galaxy collection install .*/build/psscript/psscript-infra-\*\.tar\.gz$", containerfile)


def test_python_requirements_cover_the_plugins_imports(context):
    imported = _third_party_imports()
    assert set(MODULE_LIBRARIES) <= imported, imported
    pinned = [Requirement(line) for line in (context / "_build" / "requirements.txt").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    pinned_names = {canonicalize_name(r.name) for r in pinned}
    assert {canonicalize_name(d) for d in MODULE_LIBRARIES.values()} <= pinned_names
    installed = _with_dependencies(pinned_names)
    providers = importlib.metadata.packages_distributions()
    missing = {name for name in imported if not {canonicalize_name(d) for d in providers.get(name, [])} & installed}
    assert missing == set(), "imported by the plugins, installed by no Python requirement of the EE"


def test_no_registry_is_named_in_the_context(context, tmp_path):
    assert _registry_references(context) == []
    # The control: the same definition with a host in the base image's name.
    with open(EE_FILE, encoding="utf-8") as handle:
        text = handle.read()
    base = _definition()["images"]["base_image"]["name"]
    host = "mirror.example.test:5000"
    named = _create(tmp_path, text.replace("name: " + base, "name: %s/%s" % (host, base)))
    images, _ = _base_images((named / "Containerfile").read_text(encoding="utf-8"))
    assert [_has_registry(image) for image in images] == [True]
    assert [ref for _, ref in _registry_references(named)] == ["%s/%s" % (host, base.split(":")[0])]
