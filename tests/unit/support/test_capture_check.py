"""tests/support/capture_check.py: the pcap reading that decides what crossed the bridge (pure logic)."""
from __future__ import annotations

import importlib.util
import os
import socket
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "capture_check", os.path.join(HERE, "..", "..", "support", "capture_check.py"))
capture_check = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(capture_check)


def _frame(src, dst, payload, proto=6, ethertype=b"\x08\x00"):
    tcp = struct.pack(">HHIIBBHHH", 40000, 6379, 1, 1, 5 << 4, 0x18, 1024, 0, 0) + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x00" * 12 + ethertype + ip + tcp


def _pcap(path, frames):
    data = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    for frame in frames:
        data += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    path.write_bytes(data)


def test_payloads_are_joined_and_counted_per_address(tmp_path):
    pcap = tmp_path / "c.pcap"
    _pcap(pcap, [_frame("172.26.0.31", "172.26.0.32", b"hello"),
                 _frame("172.26.0.32", "172.26.0.31", b"world!"),
                 _frame("172.26.0.32", "172.26.0.31", b""),              # an ACK: no payload
                 _frame("172.26.0.33", "172.26.0.31", b"udp", proto=17),  # not TCP
                 _frame("172.26.0.33", "172.26.0.31", b"arp", ethertype=b"\x08\x06")])
    sizes, payload = capture_check.pcap_payloads(str(pcap))
    assert sizes == {"172.26.0.31": 11, "172.26.0.32": 11}
    assert payload == b"hello\0world!"
    # A marker split between two packets is not taken for one (the payloads are joined by a NUL).
    assert b"helloworld" not in payload


def test_a_marker_inside_a_packet_is_found(tmp_path):
    pcap = tmp_path / "c.pcap"
    _pcap(pcap, [_frame("172.26.0.20", "172.26.0.10", b"INSERT ... VALUES ('capmarkabc00000001')")])
    assert b"capmarkabc" in capture_check.pcap_payloads(str(pcap))[1]
