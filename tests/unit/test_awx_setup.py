# -*- coding: utf-8 -*-
"""playbooks/awx_setup.yml, without an AWX server.

No AWX server is reachable here, so this checks what can be checked offline:
- ansible-playbook --syntax-check of awx_setup.yml;
- every awx.awx task's arguments against the module's own argument spec (ansible-lint's
  `args` rule, which the production profile does not load: it is run here explicitly, with a
  broken copy as the control that proves the check can fail);
- every job template's playbook exists, every schedule points at a job template and repeats
  as documented, and every backup survey choice passes backup.yml's own type check.
execution-environment.yml is checked in test_execution_environment.py.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
AWX_SETUP = os.path.join(REPO, "playbooks", "awx_setup.yml")
BACKUP = os.path.join(REPO, "playbooks", "backup.yml")


def _env():
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(REPO, ".cache", "collections"))
    env.setdefault("ANSIBLE_CONFIG", os.path.join(REPO, "ansible.cfg"))
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def _run(argv, cwd=REPO, **kwargs):
    return subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300, check=False, **kwargs)


def _play_vars():
    from ansible.parsing.dataloader import DataLoader

    # Ansible's own loader: the playbook uses !unsafe for the credential injectors.
    plays = DataLoader().load_from_file(AWX_SETUP)
    assert len(plays) == 1
    return plays[0]["vars"]


def test_syntax_check():
    result = _run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", AWX_SETUP])
    assert result.returncode == 0, result.stdout + result.stderr


def test_module_arguments_match_the_awx_modules(tmp_path):
    # A copy with one invalid choice is the control: the same run must report it.
    broken = tmp_path / "awx_setup_broken.yml"
    with open(AWX_SETUP, encoding="utf-8") as handle:
        text = handle.read()
    assert "pull: missing" in text
    broken.write_text(text.replace("pull: missing", "pull: sometimes"), encoding="utf-8")
    # The role list file include_vars reads is resolved relative to the playbook.
    (tmp_path / "roles").symlink_to(os.path.join(REPO, "roles"))
    shutil.copytree(os.path.join(REPO, "playbooks"), tmp_path / "playbooks", symlinks=True)
    shutil.copy(broken, tmp_path / "playbooks" / "awx_setup_broken.yml")
    config = tmp_path / "lint-args.yml"
    # skip_action_validation defaults to true, which turns the args rule off; `-t syntax`
    # selects it (`-t args` does not, ansible-lint 25 matches tags against args[module]).
    config.write_text("---\noffline: true\nskip_action_validation: false\n", encoding="utf-8")
    result = _run([
        os.path.join(BIN, "ansible-lint"), "-c", str(config), "-t", "syntax", "-f", "codeclimate",
        AWX_SETUP, str(tmp_path / "playbooks" / "awx_setup_broken.yml"),
    ])
    findings = json.loads(result.stdout or "[]")
    args_findings = [f for f in findings if f["check_name"].startswith("args")]
    by_file = {}
    for finding in args_findings:
        by_file.setdefault(os.path.basename(finding["location"]["path"]), []).append(finding["description"])
    assert "awx_setup.yml" not in by_file, by_file
    assert by_file.get("awx_setup_broken.yml") == ["value of pull must be one of: always, missing, never, got: sometimes"], (
        findings, result.stderr[-2000:])


def test_job_templates_run_existing_playbooks():
    templates = _play_vars()["awx_job_templates"]
    names = [t["name"] for t in templates]
    assert names == ["site", "backup", "health", "drill", "images refresh"]
    for template in templates:
        path = os.path.join(REPO, template["playbook"])
        assert os.path.isfile(path), "job template %s runs %s, which does not exist" % (template["name"], template["playbook"])
        result = _run([os.path.join(BIN, "ansible-playbook"), "--syntax-check", "-i", "inventories/local", path])
        assert result.returncode == 0, result.stdout + result.stderr


def test_schedules_point_at_templates_and_repeat_as_documented():
    from dateutil.rrule import rrulestr

    play_vars = _play_vars()
    names = {t["name"] for t in play_vars["awx_job_templates"]}
    periods = {}
    for schedule in play_vars["awx_schedules"]:
        assert schedule["template"] in names
        # AWX writes DTSTART and RRULE on one line separated by a space.
        rule = rrulestr(schedule["rrule"].replace(" RRULE:", "\nRRULE:"))
        first, second = list(rule[:2])
        assert first.tzinfo is not None and first.utcoffset() == datetime.timedelta(0)
        periods[schedule["template"]] = second - first
    assert periods == {"drill": datetime.timedelta(days=7), "health": datetime.timedelta(hours=1),
                       "images refresh": datetime.timedelta(days=7)}


def _backup_type_check():
    """The `that` of backup.yml's own check of -e type."""
    with open(BACKUP, encoding="utf-8") as handle:
        plays = yaml.safe_load(handle)
    for play in plays:
        for task in play.get("tasks", []):
            check = task.get("ansible.builtin.assert")
            if check and re.search(r"\btype\b", json.dumps(check.get("that"))):
                return check["that"]
    raise AssertionError("backup.yml has no assert on -e type")


@pytest.mark.parametrize("expect_ok", [True, False])
def test_backup_survey_choices_are_types_backup_yml_accepts(tmp_path, expect_ok):
    spec = next(t for t in _play_vars()["awx_job_templates"] if t["name"] == "backup")["survey"]["spec"]
    assert [q["variable"] for q in spec] == ["type"]
    choices = _play_vars()["awx_backup_types"]
    assert spec[0]["choices"] == "{{ awx_backup_types }}" and spec[0]["default"] in choices
    # Evaluate backup.yml's own condition for each choice; a value it must refuse is the control.
    values = [str(c) for c in choices] if expect_ok else ["nightly"]
    probe = [{
        "name": "Evaluate backup.yml's type check",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{
            "name": "Check",
            "ansible.builtin.assert": {"that": _backup_type_check(), "quiet": True},
            "vars": {"type": "{{ item }}"},
            "loop": values,
        }],
    }]
    path = tmp_path / "probe.yml"
    path.write_text(json.dumps(probe), encoding="utf-8")  # JSON is YAML; no Ansible types to represent
    result = _run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(path)])
    assert (result.returncode == 0) is expect_ok, result.stdout + result.stderr
