# Copyright: (c) 2026, psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters about the stack's images; documented in images_to_ship.yml."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError


def _ids_by_ref(images, where):
    if not isinstance(images, (list, tuple)):
        raise AnsibleFilterError('images_to_ship: the %s images must be a list (docker_image_info images), got %s'
                                 % (where, type(images).__name__))
    ids = {}
    for image in images:
        if not isinstance(image, Mapping) or 'Id' not in image:
            raise AnsibleFilterError('images_to_ship: a %s image has no Id: %r' % (where, image))
        for tag in image.get('RepoTags') or []:
            ids[tag] = image['Id']
    return ids


def images_to_ship(controller_images, host_images, refs):
    """The refs (name:tag) whose image ID on the Docker host differs from the controller's, or that
    the host lacks, in the order given. Fails when the controller lacks one: there is nothing to ship."""
    controller = _ids_by_ref(controller_images, 'controller')
    host = _ids_by_ref(host_images, 'Docker host')
    missing = [ref for ref in refs if ref not in controller]
    if missing:
        raise AnsibleFilterError('images_to_ship: the controller has no image %s; build it there first'
                                 % ', '.join(missing))
    return [ref for ref in refs if host.get(ref) != controller[ref]]


class FilterModule(object):

    def filters(self):
        return {'images_to_ship': images_to_ship}
