#!/usr/bin/env python3
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a client sees of a port's TLS, as JSON (molecule default's verify_tls.yml).

    tls_check.py --host 127.0.0.1 --port 6432 --user psscript --dbname psscript --ca ca.crt
    tls_check.py --protocol redis --host 127.0.0.1 --port 6379 [--user app] --ca ca.crt

Logs in four ways and reports each outcome: plain text, with TLS checked against the stack CA (chain and the
address: libpq's verify-full), with a CA made here (wrong CA), and with a host name that is not in the
certificate (dialling --host but checking that name). Also reports the certificate the port serves (serial,
issuer, expiry, names), so a test can tell a re-issued one.

PostgreSQL and PgBouncer (--protocol postgres, the default): psycopg2, password from PGPASSWORD, the certificate
read through PostgreSQL's SSLRequest. Redis and Sentinel (--protocol redis): AUTH (with --user, an ACL user) and
PING over a socket, password from REDIS_PASSWORD; a login is ok when PING answers PONG.
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


def resp(*words):
    out = b'*%d\r\n' % len(words)
    for word in words:
        data = word.encode()
        out += b'$%d\r\n%s\r\n' % (len(data), data)
    return out


def redis_login(host, port, user, password, ca=None, server_hostname=None):
    """AUTH and PING over plain TCP (ca None) or TLS checked with ca and server_hostname (default: host)."""
    try:
        with socket.create_connection((host, port), timeout=5) as plain:
            sock, protocol = plain, None
            if ca:
                sock = ssl.create_default_context(cafile=ca).wrap_socket(plain, server_hostname=server_hostname or host)
                protocol = sock.version()
            stream = sock.makefile('rb')
            replies = []
            for command in ([('AUTH', user, password) if user else ('AUTH', password)] if password else []) + [('PING',)]:
                sock.sendall(resp(*command))
                line = stream.readline()
                if not line:
                    return dict(ok=False, error='connection closed by the server after %s' % command[0])
                replies.append(line.decode(errors='replace').strip())
    except (OSError, ssl.SSLError) as err:
        return dict(ok=False, error='%s: %s' % (type(err).__name__, err))
    return dict(ok=replies[-1] == '+PONG', ssl=ca is not None, protocol=protocol, replies=replies)


def served_certificate(host, port, ssl_request=True):
    with socket.create_connection((host, port), timeout=5) as sock:
        if ssl_request:
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
    parser.add_argument('--protocol', choices=('postgres', 'redis'), default='postgres')
    for name in ('host', 'ca'):
        parser.add_argument('--' + name, required=True)
    parser.add_argument('--user')
    parser.add_argument('--dbname')
    parser.add_argument('--port', type=int, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wrong_ca = os.path.join(tmp, 'wrong-ca.crt')
        make_wrong_ca(wrong_ca)
        if args.protocol == 'redis':
            auth = (args.host, args.port, args.user, os.environ.get('REDIS_PASSWORD'))
            report = dict(
                # No password in clear: a PING alone shows whether the port speaks plain RESP at all.
                plain=redis_login(args.host, args.port, None, None),
                verify_full=redis_login(*auth, ca=args.ca),
                wrong_ca=redis_login(*auth, ca=wrong_ca),
                wrong_host=redis_login(*auth, ca=args.ca, server_hostname=WRONG_NAME),
                certificate=served_certificate(args.host, args.port, ssl_request=False),
            )
            json.dump(report, sys.stdout, indent=1, sort_keys=True)
            return 0
        if not (args.user and args.dbname):
            parser.error('--protocol postgres needs --user and --dbname')
        common = dict(port=args.port, user=args.user, dbname=args.dbname)
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
