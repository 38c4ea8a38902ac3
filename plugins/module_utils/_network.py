# -*- coding: utf-8 -*-
# Copyright: psscript.infra contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Static addresses of the stack's instances on the project network.

Every instance has a fixed address so that a restarted Redis master comes back
where Sentinel knows it and is turned into a replica. The address is the
subnet's network address plus the instance's index from the inventory: adding an
instance never moves the others.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress


class AddressError(ValueError):
    """An index or subnet that cannot give an instance address."""


# The bridge's gateway takes the first host address.
RESERVED_LOW = 1


def instance_address(subnet, index, allow_reserved=False):
    """The address of the instance with this index in the subnet, as a string.

    allow_reserved lets index 1 through: that is how the network role names the gateway.
    """
    try:
        network = ipaddress.ip_network(str(subnet), strict=True)
    except ValueError as exc:
        raise AddressError("stack_subnet %r is not a network address in CIDR form: %s" % (subnet, exc))
    try:
        offset = int(index)
    except (TypeError, ValueError):
        raise AddressError("stack_address_index must be a whole number, not %r" % (index,))
    # The last address of an IPv4 network is its broadcast address.
    last = network.num_addresses - (2 if network.version == 4 else 1)
    lowest = 1 if allow_reserved else RESERVED_LOW + 1
    if offset < lowest or offset > last:
        raise AddressError(
            "stack_address_index %d is outside the usable range %d..%d of %s "
            "(0 is the network, 1 the gateway)" % (offset, RESERVED_LOW + 1, last, network)
        )
    return str(network.network_address + offset)


def duplicate_addresses(assignments):
    """{address: [instances]} for every address given to more than one instance."""
    seen = {}
    for instance, address in assignments.items():
        seen.setdefault(address, []).append(instance)
    return dict((address, sorted(names)) for address, names in seen.items() if len(names) > 1)
