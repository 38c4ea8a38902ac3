# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The s3 option shared by the backup modules (module_utils._s3.s3_argument_spec).
    DOCUMENTATION = r'''
options:
  s3:
    description:
      - Keep a copy of the backups in S3 (AWS S3 or a compatible store such as MinIO or Ceph RGW), through boto3.
      - Objects are stored under C(<prefix>/<kind>/<backup_id>/), kind C(postgres) or C(redis), one object per file of
        the backup with its SHA-256 in the metadata (C(x-amz-meta-sha256)), and the backup's C(catalog.json) uploaded
        last. A remote backup without its C(catalog.json) (an interrupted upload) is never listed or restored.
      - A backup is uploaded only after it passed verification. The remote copy is then checked end to end (every
        object listed with its size, then read back through SHA-256 and compared with the catalog).
      - Omitted (the default), nothing is sent to S3.
    type: dict
    suboptions:
      bucket:
        description:
          - Name of the bucket. It must exist; the module does not create buckets.
        type: str
        required: true
      prefix:
        description:
          - Key prefix inside the bucket, for example V(prod/site-a). Leading and trailing slashes are ignored.
          - Give every cluster its own prefix.
        type: str
        default: ''
      endpoint_url:
        description:
          - URL of an S3-compatible endpoint (MinIO, Ceph RGW), for example V(https://minio.example.net:9000).
            Buckets are then addressed by path.
          - Omitted, AWS S3 of O(s3.region) is used.
        type: str
      region:
        description:
          - Region of the bucket (C(us-east-1) when neither this nor the AWS configuration says otherwise).
        type: str
      access_key:
        description:
          - Access key id. Give it with O(s3.secret_key), or give neither and boto3 reads the usual sources
            (E(AWS_ACCESS_KEY_ID)/E(AWS_SECRET_ACCESS_KEY), a profile, an instance role).
        type: str
      secret_key:
        description:
          - Secret access key belonging to O(s3.access_key).
        type: str
      sse:
        description:
          - Server-side encryption requested on every object written (C(ServerSideEncryption)).
          - V(aws:kms) uses O(s3.sse_kms_key_id) when given, otherwise the bucket's default KMS key.
          - Omitted, objects get the bucket's default encryption, if any.
        type: str
        choices: [AES256, 'aws:kms']
      sse_kms_key_id:
        description:
          - KMS key (id, ARN or alias) for O(s3.sse=aws:kms).
        type: str
      validate_certs:
        description:
          - Check the endpoint's TLS certificate. Turn off only for a test endpoint with a self-signed certificate.
        type: bool
        default: true
      read_timeout:
        description:
          - Seconds a request to S3 may wait for the next byte before it fails (and is tried again, see
            O(s3.max_attempts)).
        type: int
        default: 120
      max_attempts:
        description:
          - Attempts per S3 request, with botocore's standard back-off (up to 20 s) between them. An S3 endpoint
            that is unreachable fails a request after about O(s3.max_attempts) x O(s3.read_timeout) seconds.
        type: int
        default: 5
      age_recipients:
        description:
          - Encrypt every object written to S3 with C(age), in the stream, to these X25519 public keys (C(age1...), as
            C(age-keygen) prints them); any one of the matching private keys decrypts. Empty, objects are stored as
            they are.
          - Encrypted are the files of every backup and the archived WAL segments. The backup's C(catalog.json) stays
            readable (names, times, LSNs and hashes; signed with the catalog key) and records C(encryption) and, per
            file, the SHA-256 and size of the stored (encrypted) bytes beside the plaintext's (C(plain_sha256),
            C(plain_size)), so verification reads S3 without any private key. Timeline history files stay in clear
            (no data; a restore's plan reads them without the key). A WAL object carries C(x-amz-meta-age=1) and
            the plaintext's SHA-256.
          - The local copies in O(backup_dir) stay plain.
        type: list
        elements: str
        default: []
      age_identity_file:
        description:
          - Path of an age identity file (private key) on the host that runs the module, used to decrypt encrypted
            copies when they are downloaded (restore) or WAL is fetched. Give it only to restores.
          - A restore that needs it and lacks it, or whose key matches none of the recipients, fails with the cause
            before anything is written.
        type: path
requirements:
  - boto3 (on the host that runs the module; the C(psscript/backup) image has it), when O(s3) is given
  - age (on the host that runs the module; the C(psscript/backup) image has it), when O(s3.age_recipients) or
    O(s3.age_identity_file) is given
'''
