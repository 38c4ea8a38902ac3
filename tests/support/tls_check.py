#!/usr/bin/env python3
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a client sees of a PostgreSQL or PgBouncer port's TLS, as JSON (molecule default's verify_tls.yml).

    tls_check.py --host 127.0.0.1 --port 6432 --user psscript --dbname psscript --ca ca.crt

Logs in (password from PGPASSWORD) four ways and reports each outcome: plain text (sslmode=disable), verify-full
with the stack CA, verify-full with a CA made here (wrong CA), and verify-full with a host name that is not in the
certificate (libpq dials hostaddr=--host but checks the name). Also reports the certificate the port serves
(serial, expiry, names), read through PostgreSQL's SSLRequest, so a test can tell a re-issued one.
"""

import argparse
import datetime
import json
import os
import socket
import ssl
import struct
import sys
import tempfile

import psycopg2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SSL_REQUEST = struct.pack('!ii', 8, 80877103)
WRONG_NAME = 'not-in-the-certificate.invalid'


def login(**kwargs):
    try:
        conn = psycopg2.connect(connect_timeout=5, **kwargs)
    except psycopg2.Error as err:
        return dict(ok=False, error=str(err).strip())
    try:
        # A query: through PgBouncer, it needs a server connection (PgBouncer's own TLS to PostgreSQL).
        with conn.cursor() as cur:
            cur.execute('SELECT 1')
        return dict(ok=True, ssl=bool(conn.info.ssl_in_use), protocol=conn.info.ssl_attribute('protocol'))
    except psycopg2.Error as err:
        return dict(ok=False, error=str(err).strip())
    finally:
        conn.close()


def make_wrong_ca(path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'not the stack CA')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(path, 'wb') as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))


def served_certificate(host, port):
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(SSL_REQUEST)
        if sock.recv(1) != b'S':
            return None
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with context.wrap_socket(sock) as tls:
            cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return dict(serial=str(cert.serial_number), issuer=cert.issuer.rfc4514_string(),
                not_after=cert.not_valid_after_utc.isoformat(),
                names=[str(n.value) for n in names])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ('host', 'user', 'dbname', 'ca'):
        parser.add_argument('--' + name, required=True)
    parser.add_argument('--port', type=int, required=True)
    args = parser.parse_args()
    common = dict(port=args.port, user=args.user, dbname=args.dbname)
    with tempfile.TemporaryDirectory() as tmp:
        wrong_ca = os.path.join(tmp, 'wrong-ca.crt')
        make_wrong_ca(wrong_ca)
        report = dict(
            plain=login(host=args.host, sslmode='disable', **common),
            verify_full=login(host=args.host, sslmode='verify-full', sslrootcert=args.ca, **common),
            wrong_ca=login(host=args.host, sslmode='verify-full', sslrootcert=wrong_ca, **common),
            wrong_host=login(host=WRONG_NAME, hostaddr=args.host, sslmode='verify-full', sslrootcert=args.ca, **common),
            certificate=served_certificate(args.host, args.port),
        )
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
