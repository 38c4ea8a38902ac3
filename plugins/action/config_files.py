# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of psscript.infra.config_files: render each file's template (as
ansible.builtin.template renders it) or read its role file, send every content to the target in
one module run, and build the content diffs from what was sent (the module never returns a
content)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import copy
import os

from jinja2.defaults import (
    BLOCK_END_STRING,
    BLOCK_START_STRING,
    COMMENT_END_STRING,
    COMMENT_START_STRING,
    VARIABLE_END_STRING,
    VARIABLE_START_STRING,
)

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

from ansible_collections.psscript.infra.plugins.module_utils._configfiles import ARGUMENT_SPEC, FILE_SOURCES

try:
    # ansible-core 2.19 and later: the template engine ansible.builtin.template renders with.
    from ansible.template import trust_as_template
    from ansible._internal._templating._template_vars import generate_ansible_template_vars
except ImportError:  # pragma: no cover - older cores
    trust_as_template = None

MODULE = 'psscript.infra.config_files'
# ansible.builtin.template's defaults, so a file renders byte for byte as it did with that module.
TEMPLATE_OVERRIDES = dict(
    block_start_string=BLOCK_START_STRING,
    block_end_string=BLOCK_END_STRING,
    variable_start_string=VARIABLE_START_STRING,
    variable_end_string=VARIABLE_END_STRING,
    comment_start_string=COMMENT_START_STRING,
    comment_end_string=COMMENT_END_STRING,
    trim_blocks=True,
    lstrip_blocks=False,
    newline_sequence='\n',
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False  # contents travel as module arguments

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        dummy, args = self.validate_argument_spec(argument_spec=_controller_spec(ARGUMENT_SPEC))
        files = []
        for spec in args['files']:
            spec = dict(spec)
            sources = [key for key in FILE_SOURCES if spec.get(key) is not None]
            if spec['state'] == 'present' and len(sources) != 1:
                raise AnsibleActionFail('config_files: %s needs one of template, src or content' % spec['dest'])
            if spec.get('template') is not None:
                spec['content'] = self._render(spec['template'], spec['dest'], task_vars)
            elif spec.get('src') is not None:
                spec['content'] = self._read_file(spec['src'])
            spec.pop('template', None)
            spec.pop('src', None)
            files.append(spec)

        try:
            result.update(self._execute_module(module_name=MODULE, module_args=dict(args, files=files),
                                               task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if isinstance(result.get('diff'), list):
            contents = [spec['content'] for spec in files]
            result['diff'] = [self._content_diff(entry, contents) for entry in result['diff']]
        return result

    def _render(self, name, dest, task_vars):
        """The template rendered exactly as ansible.builtin.template does (same search path, variables
        and defaults)."""
        if trust_as_template is None:
            raise AnsibleActionFail('config_files renders templates with the engine of ansible-core 2.19 or later: '
                                    'upgrade ansible-core, or use ansible.builtin.template')
        try:
            source = self._find_needle('templates', name)
        except AnsibleError as exc:
            raise AnsibleActionFail(to_text(exc))
        template_data = trust_as_template(self._loader.get_text_file_contents(source))
        searchpath = list(task_vars.get('ansible_search_path', [])) + [self._loader._basedir, os.path.dirname(source)]
        searchpath = [path for base in searchpath for path in (os.path.join(base, 'templates'), base)]
        template_vars = task_vars.copy()
        template_vars.update(generate_ansible_template_vars(
            path=name, fullpath=source, dest_path=dest, include_ansible_managed='ansible_managed' not in template_vars))
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=template_vars)
        try:
            rendered = templar.template(template_data, escape_backslashes=False, overrides=TEMPLATE_OVERRIDES)
        except AnsibleError as exc:
            raise AnsibleActionFail('config_files: template %s for %s: %s' % (name, dest, to_text(exc)), orig_exc=exc)
        return '' if rendered is None else to_text(rendered)

    def _read_file(self, name):
        try:
            source = self._find_needle('files', name)
        except AnsibleError as exc:
            raise AnsibleActionFail(to_text(exc))
        with open(self._loader.get_real_file(source), 'rb') as handle:
            data = handle.read()
        try:
            return data.decode('utf-8')
        except UnicodeDecodeError:
            raise AnsibleActionFail('config_files: %s is not UTF-8 text: copy it with ansible.builtin.copy' % source)

    @staticmethod
    def _content_diff(entry, contents):
        """A content entry of the module's diff (previous content in base64, the file's position in
        the request) as before/after text."""
        if 'before_b64' not in entry:
            return entry
        entry = dict(entry)
        entry['before'] = base64.b64decode(entry.pop('before_b64')).decode('utf-8', errors='replace')
        entry['after'] = contents[entry.pop('file_index')]
        return entry


def _controller_spec(spec):
    """The module's argument spec for checking on the controller: paths stay as written (a C(~) is
    the target's home, expanded there by the module)."""
    spec = copy.deepcopy(spec)
    for option in spec.values():
        if option.get('type') == 'path':
            option['type'] = 'str'
        if option.get('options'):
            option['options'] = _controller_spec(option['options'])
    return spec
