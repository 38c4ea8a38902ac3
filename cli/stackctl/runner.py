# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the collection's playbooks.

By default a playbook runs with the ``ansible.posix.jsonl`` stdout callback: one JSON event per
line, read as it comes. stackctl shows a progress line of task names, then what the playbook
reports (the ``msg`` of its debug tasks: tables, plans, summaries) and, when it fails, one line
saying why (the ``msg`` of the task that failed). ``-v`` runs it with Ansible's own output instead.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

from stackctl import REPO
from stackctl.args import StackError

DEBUG_ACTIONS = ('debug', 'ansible.builtin.debug', 'ansible.legacy.debug')
FAILED_EVENTS = ('v2_runner_on_failed', 'v2_runner_on_unreachable')
TASK_EVENTS = ('v2_playbook_on_task_start', 'v2_playbook_on_handler_task_start', 'v2_runner_on_start')


def find_tool(name):
    """The repo venv's tool first (like the Makefile), else PATH."""
    local = os.path.join(REPO, '.venv', 'bin', name)
    if os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    if not found:
        raise StackError('%s not found: run `make venv` in %s' % (name, REPO))
    return found


def collections_path():
    """REPO/.cache/collections, holding ansible_collections/psscript/infra -> REPO (`make collection`)."""
    collections = os.path.join(REPO, '.cache', 'collections')
    link = os.path.join(collections, 'ansible_collections', 'psscript', 'infra')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return collections


def ansible_env(events):
    """Environment of ansible-playbook: the repo's collection and config; JSON events or Ansible's output."""
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path(), ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'))
    env['PATH'] = os.path.join(REPO, '.venv', 'bin') + os.pathsep + env.get('PATH', '')
    if events:
        env.update(ANSIBLE_STDOUT_CALLBACK='ansible.posix.jsonl', ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
                   ANSIBLE_JSON_INDENT='0')
    else:
        env.update(ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='yaml')
    return env


# ---------------------------------------------------------------- events (pure)

def parse_event(line):
    """One event of the jsonl callback, or None for any other line."""
    line = line.strip()
    if not line.startswith('{'):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and '_event' in event else None


def task_started(event):
    """The name of the task an event starts, else None."""
    if event.get('_event') in TASK_EVENTS:
        return (event.get('task') or {}).get('name') or None
    return None


def _lines(value):
    if isinstance(value, (list, tuple)):
        return '\n'.join(str(v) for v in value)
    return str(value)


def messages(event):
    """What a successful debug task reports (its ``msg``, per loop item too), else []."""
    if event.get('_event') != 'v2_runner_on_ok':
        return []
    found = []
    for result in (event.get('hosts') or {}).values():
        if result.get('action') not in DEBUG_ACTIONS:
            continue
        items = result.get('results') if isinstance(result.get('results'), list) else [result]
        for item in items:
            if isinstance(item, dict) and 'msg' in item and item['msg'] not in (None, ''):
                found.append(_lines(item['msg']).strip())
    return [m for m in found if m]


def one_line(text):
    return ' '.join(str(text).split())


def failure(event):
    """``(task name, host, message)`` of a failed or unreachable result, else None."""
    if event.get('_event') not in FAILED_EVENTS:
        return None
    task = (event.get('task') or {}).get('name') or 'a task'
    for host, result in (event.get('hosts') or {}).items():
        msg = result.get('msg')
        if not msg and isinstance(result.get('results'), list):
            msg = '; '.join(str(r.get('msg')) for r in result['results'] if isinstance(r, dict) and r.get('failed'))
        if isinstance(msg, (list, tuple)):
            msg = '; '.join(str(m) for m in msg)
        return task, host, one_line(msg or result.get('stderr') or 'failed')
    return task, None, 'failed'


def ansible_error(stderr):
    """The first error Ansible printed on stderr (an inventory or syntax error has no event)."""
    lines = [line.rstrip() for line in (stderr or '').splitlines()]
    for index, line in enumerate(lines):
        if line.startswith(('ERROR!', '[ERROR]')):
            text = [line.split(':', 1)[1] if line.startswith('[ERROR]') else line[len('ERROR!'):]]
            text += [more for more in lines[index + 1:index + 3] if more and not more.startswith(('[', 'Origin'))]
            return one_line(' '.join(text))
    tail = [line for line in lines if line.strip()]
    return one_line(tail[-1]) if tail else None


class Outcome(object):
    """What a playbook run showed: task names, reported messages, the failure that ended it."""

    def __init__(self):
        self.tasks = []
        self.messages = []
        self.failure = None
        self.rc = None
        self.stderr = ''

    def add(self, event):
        """Take one event; returns the name of a task it starts (for progress), else None."""
        name = task_started(event)
        if name is not None:
            self.tasks.append(name)
        self.messages.extend(messages(event))
        failed = failure(event)
        if failed is not None:
            # Rescued and ignored failures are events too: the one that ended the run comes last.
            self.failure = failed
        return name

    def error(self):
        """One line: why the run failed."""
        if self.failure is not None:
            task, host, msg = self.failure
            return msg if msg != 'failed' else '%s failed on %s' % (task, host)
        return ansible_error(self.stderr) or 'ansible-playbook exited %s' % self.rc


# ---------------------------------------------------------------- running

def run_playbook(argv, progress, verbose, out=None, err=None):
    """Run ansible-playbook. ``verbose``: Ansible's own output, streamed. Otherwise progress
    (``progress``: task names, one line each, or one line rewritten on a terminal), then the
    reported messages, and on failure one line on stderr. Returns the exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if verbose:
        return subprocess.call(argv, env=ansible_env(events=False), cwd=REPO)
    started = time.monotonic()
    tty = progress and out.isatty()
    outcome = Outcome()
    proc = subprocess.Popen(argv, env=ansible_env(events=True), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    # stderr (warnings) is read on the side so a full pipe can never block the run.
    stderr_lines = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    for line in proc.stdout:
        event = parse_event(line)
        if event is None:
            continue
        name = outcome.add(event)
        if name is not None and progress:
            text = 'TASK %d: %s' % (len(outcome.tasks), name)
            if tty:
                width = shutil.get_terminal_size().columns - 1
                out.write('\r' + text[:width].ljust(width))
            else:
                out.write(text + '\n')
            out.flush()
    outcome.rc = proc.wait()
    reader.join(5)
    outcome.stderr = ''.join(stderr_lines)
    if tty:
        out.write('\r' + ' ' * (shutil.get_terminal_size().columns - 1) + '\r')
    for message in outcome.messages:
        out.write(message + '\n')
    if outcome.rc != 0:
        out.flush()
        err.write('stackctl: %s (failed after %d tasks in %.0f s; -v shows Ansible\'s output)\n'
                  % (outcome.error(), len(outcome.tasks), time.monotonic() - started))
    elif progress:
        out.write('done: %d tasks in %.0f s\n' % (len(outcome.tasks), time.monotonic() - started))
    out.flush()
    err.flush()
    return outcome.rc


def run_quiet(argv):
    """Run a playbook for its side effect (a file it writes); ``(rc, one-line error)``."""
    outcome = Outcome()
    proc = subprocess.run(argv, env=ansible_env(events=True), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    for line in proc.stdout.splitlines():
        event = parse_event(line)
        if event is not None:
            outcome.add(event)
    outcome.rc, outcome.stderr = proc.returncode, proc.stderr
    return proc.returncode, (outcome.error() if proc.returncode else None)
