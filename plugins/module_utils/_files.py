# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Durable file writes, in one place: the secrets file, the Prometheus textfile and the
backup catalog all publish files that a reader must never see half-written."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import tempfile


def fsync_path(path, directory=False):
    """fsync a file or, with directory=True, a directory (so a rename in it survives a crash)."""
    flags = os.O_RDONLY
    if directory and hasattr(os, 'O_DIRECTORY'):
        flags |= os.O_DIRECTORY
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_mode():
    """The mode open() would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path, text, mode=None, uid=None, gid=None):
    """Replace path with text atomically: temporary file in the same directory (created 0600, so
    a private file is never readable by others, even while it is written), fsync, chown to uid/gid
    (None: unchanged), chmod to mode (None: what open() would give), os.replace, fsync the
    directory. A reader sees the old file or the new one, with its final owner and mode, never a
    mix. Nothing is left behind on failure; the OSError is raised."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path), suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_path(directory, directory=True)
