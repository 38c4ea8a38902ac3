# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m stackctl (with cli/ on sys.path): the same as ./stackctl under the running python."""

import sys

from stackctl.main import main

sys.exit(main())
