#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pg_backup
short_description: Take, verify, list, prune and restore PostgreSQL 17 full and incremental base backups
version_added: 0.1.0
description:
  - Keeps a catalog of PostgreSQL base backups in O(backup_dir). Each backup is taken with C(pg_basebackup)
    in plain format (tar compressed with zstd in the stream with O(compress)), checked, and only then published
    atomically, so an interrupted backup is never listed.
  - A plain backup is published unsealed (C(sealed=false)), at the speed of C(pg_basebackup) itself. Its catalog entry
    records the size of each file, after checking that the files written are exactly the ones its C(backup_manifest)
    lists with those sizes, and the SHA-256 of that manifest, whose CRC32C checksums cover every file. The module does
    not read the data. The first O(action=verify) that passes seals it. That verify hashes every file, checks the
    files against the manifest with C(pg_verifybackup), and records each file's SHA-256 (C(sealed=true)). The backup
    jobs of the C(backup) role verify every backup right after taking it, and O(s3) verifies it before copying it, so
    an unsealed backup is never copied to S3.
  - A compressed backup records the SHA-256 of its archive and of its manifest, and is sealed when published.
  - Backups hold no WAL (C(pg_basebackup --wal-method=none)). The WAL archive in O(wal_archive_dir) is what makes
    them usable, so a backup is published only after every WAL file from its start to its end is in the archive.
    The archive is also what point-in-time recovery replays.
  - O(action=backup) takes a full backup, or a PostgreSQL 17 incremental one (C(--incremental)) on top of the
    newest backup of the same cluster that did not fail verification. It refuses to start when the free space
    in O(backup_dir) is below the expected size (the last full backup, or the size of all databases).
  - O(action=verify) re-hashes every file against the SHA-256 recorded in the catalog (or, for an unsealed backup,
    hashes it to seal it), runs C(pg_verifybackup)
    (parsing the archived WAL when O(wal_archive_dir) is given) and, for an incremental backup,
    C(pg_combinebackup --dry-run) over its chain. The result is recorded in the catalog; a failure fails the task.
  - O(action=list) returns the catalog, ordered by the recorded stop time (server clock), never by name.
  - O(action=prune) applies O(keep_days) and O(keep_count), never removing the newest verified full backup or a
    parent of a kept incremental; with O(wal_archive_dir) it also removes archived WAL older than the start of
    the oldest kept backup.
  - O(action=restore) rebuilds a backup (its whole incremental chain, with C(pg_combinebackup)) into the empty
    directory O(restore_dir), then proves it. A temporary server started on it (Unix socket only, no archiving,
    as O(restore_user)) replays the archived WAL through C(restore_command) to the target and promotes. The task
    fails, and removes what it restored, unless the server log says the target was reached. The server is stopped
    afterwards; the directory keeps its C(backup_label) history and is ready to be started with the stack's
    configuration.
  - Before O(action=restore) changes anything it re-hashes every backup of the chain against the SHA-256 the catalog
    recorded and refuses on any difference. For an unsealed backup it checks the sizes and the manifest's SHA-256.
    The C(pg_verifybackup) run that follows, before anything is built, checks the files' contents against that
    manifest; in check mode it does not run.
  - It also checks the WAL replay will read, in check mode too. It walks the archive (and, with O(s3), the WAL in S3)
    the way PostgreSQL will, from the backup's start segment along the timeline history of
    C(recovery_target_timeline=latest), leaving aside branches abandoned by earlier restores and C(.partial) files.
    A segment missing before newer archived WAL of that path (a gap) ends replay early, and PostgreSQL then still
    says C(archive recovery complete); so a restore to the end of the archived WAL (O(backup_id=latest)) is refused
    on a gap, on a timeline recovery cannot follow (a missing C(.history) file, a backup that is not on the newest
    timeline), and on any segment replay would read that is not a complete segment of this cluster (its size, and the
    magic, page address, timeline, system identifier and segment size of its first page), that O(restore_user) cannot read, or
    whose SHA-256 differs from the one the catalog recorded of a backup's own WAL. A point-in-time or by-id restore
    refuses only what it needs (the backup's own WAL) and warns about the rest.
  - After a restore to the end of the archived WAL, where replay ended (the switch point of the new timeline's
    history file) must lie in the newest archived segment of that walk, and the server log must not report a
    damaged WAL record inside the archived WAL; otherwise the restore fails and removes what it restored.
  - With O(live=true), O(action=restore) replaces the live data directory O(restore_dir) (in the C(psscript) stack
    C(/var/lib/postgresql/data/pgdata), run in a one-off backup container with the data volume mounted, the
    PostgreSQL container stopped). It refuses when a server runs on it. The backup is restored into a new sibling
    directory and proven there (target reached, O(check_query)); only then the current directory is renamed to
    C(<name>.before-<backup_id>-<UTC time>) and the restored one to O(restore_dir), two renames on one file system.
    Nothing is deleted, RV(previous_data_dir) says where the old data is. The new timeline's history file is marked
    for archiving (RV(history_marked)), so the live server archives it and later restores follow the new timeline.
  - With O(s3), O(action=backup) verifies the new backup (as O(action=verify) does, with its WAL), then copies to S3
    the archived WAL it needs (and any newer WAL not there yet) under C(<prefix>/postgres/wal/), then the backup
    itself, and checks the remote copy end to end. O(action=list) also lists the S3 copies, O(action=verify) also
    checks them, O(action=prune) applies the same retention rules to them (and to the WAL in S3), and
    O(action=restore) downloads (verified, published atomically into O(backup_dir)) every backup of the chain that
    is missing locally, and fetches the WAL the archive lacks into a temporary directory that C(restore_command)
    reads after the archive.
  - The module needs the PostgreSQL client tools of the server's major version (C(pg_basebackup),
    C(pg_verifybackup), C(pg_combinebackup), C(pg_waldump)); the C(psscript/backup) image has them. They are
    looked up in C(/usr/lib/postgresql/<major>/bin) first, then in E(PATH).
  - Backups are taken from the primary; a standby is refused.
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.postgres
  - psscript.infra.backup
  - psscript.infra.s3
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - O(action=list) and O(action=verify) only read the backups; in check mode verify does not record its result
        and seals nothing.
        Verifying a compressed backup still unpacks it into a temporary directory in O(scratch_dir), removed afterwards.
      - O(action=backup) in check mode connects, runs every pre-check (versions, WAL summaries, parent, free space)
        and reports what it would take, without writing anything.
      - O(action=prune) in check mode returns what it would remove.
      - O(action=restore) in check mode chooses the backup chain (local or S3), checks the hashes of the local
        backups and the WAL replay would read (RV(wal_check); WAL only in S3 is counted, not fetched, except the small
        timeline history files, read from a temporary directory), checks that no server runs on a live O(restore_dir),
        and reports what it would do, without writing.
      - With O(s3), check mode lists and reads S3 but writes and deletes nothing there.
  diff_mode:
    support: none
options:
  action:
    description:
      - V(backup) takes a backup, V(verify) checks backups, V(list) reads the catalog, V(prune) applies retention,
        V(restore) rebuilds and recovers a backup into O(restore_dir).
      - V(ship_wal) copies the archived WAL that S3 lacks to S3, in one pass or every O(ship_interval) seconds for
        O(ship_for) seconds; it needs O(s3) and O(wal_archive_dir) and never deletes. The backup container runs the
        same code in a loop (C(wal-shipper)) whenever S3 is configured.
      - V(sign) signs with the catalog key (O(catalog_key_file)) every catalog entry written before the key existed,
        in O(backup_dir) and, with O(s3), in the bucket; an entry whose C(hmac) does not match is not signed.
    type: str
    required: true
    choices: [backup, verify, list, prune, restore, ship_wal, sign]
  ship_interval:
    description:
      - Seconds between two passes of O(action=ship_wal) when O(ship_for) is above 0 (after a failure, the wait
        doubles up to 60 s).
    type: int
    default: 5
  ship_for:
    description:
      - Seconds O(action=ship_wal) keeps shipping; V(0) is one pass.
    type: int
    default: 0
  wal_archive_dir:
    description:
      - The WAL archive that C(archive_command) of the server copies completed segments into, as seen from the
        host that runs this module (in the C(psscript) stack, the volume mounted at
        C(/var/lib/postgresql/wal-archive) in the PostgreSQL container).
      - Required for O(action=backup), O(action=restore) and O(action=ship_wal). For O(action=verify) it makes
        C(pg_verifybackup) parse the backup's WAL. For O(action=prune) it enables removing WAL that no kept backup
        needs. For O(action=list) it adds RV(newest_wal_age_seconds), and with O(s3) RV(wal_shipping), how far S3 is
        behind the archive.
    type: path
  type:
    description:
      - Kind of backup O(action=backup) takes.
      - V(incremental) needs C(summarize_wal=on) on the server since before the parent backup, and the WAL summaries
        since then (C(wal_summary_keep_time)).
    type: str
    choices: [full, incremental]
    default: full
  fallback_to_full:
    description:
      - When an incremental backup is impossible (no parent backup, C(summarize_wal=off), WAL summaries missing, or
        a parent from another cluster or timeline), take a full backup instead of failing. A warning says why.
    type: bool
    default: false
  compress:
    description:
      - Store the backup as one C(data.tar.zst) plus its plain C(backup_manifest), instead of a plain data directory.
        C(pg_basebackup) compresses while it streams (C(--format=tar --compress=client-zstd)); no plain copy is
        written.
      - C(pg_verifybackup) and C(pg_combinebackup) read only plain directories, so verifying (and restoring) a
        compressed backup unpacks it into a scratch directory first (see O(scratch_dir)).
    type: bool
    default: false
  max_rate:
    description:
      - Limit the transfer rate of C(pg_basebackup) (its C(--max-rate)), for example V(32M) or V(500k), to spare
        the server's disks.
    type: str
  wal_wait_timeout:
    description:
      - Seconds O(action=backup) waits for the backup's WAL to appear in O(wal_archive_dir) after C(pg_basebackup)
        ended. The backup fails (and is removed) when it is not there in time.
    type: int
    default: 120
  backup_id:
    description:
      - Backup O(action=verify) checks, by id, or V(latest) (the newest by stop time), or V(all).
      - Backup O(action=restore) restores. V(latest) is the newest restorable backup, recovered to the end of the
        archived WAL. An id is that backup recovered only to its own end (C(recovery_target=immediate)), or to the end
        of the archived WAL with O(to_end=true). An id with O(target_time) must have ended before that time.
      - A restore plan (check mode) returns the chain it chose (RV(restored_chain)); pass its last id back, with
        O(to_end=true) for V(latest), so the restore uses exactly that chain even if backups ran meanwhile.
    type: str
    default: latest
  to_end:
    description:
      - For O(action=restore) with a backup id and no O(target_time), recover to the end of the archived WAL (as V(latest)
        does) instead of stopping where that backup ends.
    type: bool
    default: false
  target_time:
    description:
      - For O(action=restore), the point in time to recover to, in ISO 8601 with a UTC offset (V(2025-01-31T13:45:00Z),
        V(2025-01-31 14:45:00+01:00)); a time without offset is refused, so it is never read in another time zone.
      - The backup used is the newest restorable one whose recorded stop time is before O(target_time); a backup that
        ended after the target cannot stop at it. Recovery stops before the first transaction that committed after
        O(target_time) (C(recovery_target_inclusive) keeps its default).
      - When no transaction committed after O(target_time) in the archived WAL, PostgreSQL cannot tell that it was
        reached and the restore fails ("recovery ended before configured recovery target was reached").
    type: str
  restore_dir:
    description:
      - For O(action=restore), the directory to rebuild the data directory in. It must not exist or be empty; a restore
        never overwrites. Needs the plain size of the full backup free.
      - With O(live=true), the live data directory to replace (it may exist and hold data); the restore is built beside
        it, so its parent needs the plain size of the full backup free.
    type: path
  live:
    description:
      - For O(action=restore), replace the live data directory O(restore_dir) instead of filling an empty one.
      - Refused while a server runs on it. C(postmaster.pid) stays after a crash and its process id means nothing from
        another container, so when that file exists give O(login_host) and O(login_port) of the (stopped) server;
        the restore goes on only when nothing answers there. A server answering there is always refused.
      - The current data directory is moved aside (never deleted), see RV(previous_data_dir).
      - O(wal_archive_dir) must be the archive the live server archives into. The restored directory's timeline
        history files that it lacks are marked ready for archiving; a history file of the same name with other content
        there (another server took that timeline meanwhile) fails the restore before the swap.
    type: bool
    default: false
  restore_user:
    description:
      - OS user the temporary recovery server runs as, and owner of O(restore_dir) (PostgreSQL refuses to run as root).
        Its name is also the database role the O(check_query) runs as, through a peer-authenticated socket.
      - Its C(restore_command) reads O(wal_archive_dir), so a segment replay needs that this user cannot read is refused
        before the restore starts (it would end replay there).
    type: str
    default: postgres
  restore_timeout:
    description:
      - Seconds the temporary server may take to replay the WAL to the target.
    type: int
    default: 600
  check_query:
    description:
      - SQL run on the restored database once it reached the target (in O(check_db)), for example a row count of a
        table that matters. Its output (unaligned, C(|)-separated) is returned in RV(check_result).
    type: str
  check_db:
    description:
      - Database O(check_query) runs in.
    type: str
    default: postgres
  scratch_dir:
    description:
      - Where O(action=verify) unpacks compressed backups. Defaults to O(backup_dir); needs the plain size of the
        backup (and of its chain, for an incremental) free.
    type: path
notes:
  - The connection options are used by O(action=backup), and by O(action=restore) with O(live=true) to check that no
    server answers for the live directory; O(db) defaults to V(postgres) here. The login role needs
    C(REPLICATION) and a C(host replication) line in C(pg_hba.conf); C(pg_read_all_stats) lets it read database sizes
    for the first free-space check, and C(EXECUTE) on the function C(pg_switch_wal) lets it close the current WAL
    segment when the archive lags (without it, the server's own switch at backup end is awaited).
  - Jobs that write into O(backup_dir) hold an exclusive lock on C(<backup_dir>/.lock); a second one fails at once.
  - O(action=restore) holds C(<backup_dir>/.readers) shared from choosing the chain to its end, and O(action=prune)
    holds it exclusive, so a cleanup never deletes a backup or WAL that a running restore reads (it fails at once and
    the next cleanup removes them); backups still run beside a restore.
  - O(action=restore) verifies every local backup of the chain (SHA-256 and C(pg_verifybackup) with the archived WAL)
    under that lock before it builds anything; copies fetched from S3 are checked against the catalog as they arrive.
  - Times in the catalog are in UTC, from the server's clock, so they compare with C(recovery_target_time).
seealso:
  - name: pg_basebackup
    description: Options, incremental backups and WAL methods.
    link: https://www.postgresql.org/docs/17/app-pgbasebackup.html
  - name: pg_verifybackup
    description: What the manifest check covers.
    link: https://www.postgresql.org/docs/17/app-pgverifybackup.html
  - name: pg_combinebackup
    description: Reconstructing a full data directory from an incremental chain.
    link: https://www.postgresql.org/docs/17/app-pgcombinebackup.html
'''

EXAMPLES = r'''
- name: Take an incremental backup (a full one when there is nothing to build on)
  psscript.infra.pg_backup:
    action: backup
    type: incremental
    fallback_to_full: true
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive
    login_host: psscript-postgres-1
    login_user: psscript_backup
    login_password: "{{ postgres_backup_password }}"
  register: backup

- name: Verify it right away, with its WAL
  psscript.infra.pg_backup:
    action: verify
    backup_id: "{{ backup.backup_id }}"
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive

- name: Weekly compressed full backup, throttled
  psscript.infra.pg_backup:
    action: backup
    type: full
    compress: true
    max_rate: 64M
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive
    login_host: psscript-postgres-1
    login_user: psscript_backup
    login_password: "{{ postgres_backup_password }}"

- name: Keep 14 days (and at least 3 backups), with the WAL they need
  psscript.infra.pg_backup:
    action: prune
    keep_days: 14
    keep_count: 3
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive

- name: Restore drill - rebuild the state of 13:45 UTC into a scratch directory and count the scripts
  psscript.infra.pg_backup:
    action: restore
    target_time: '2025-01-31T13:45:00Z'
    restore_dir: /backups/restore-drill
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive
    check_query: SELECT count(*) FROM scripts
    check_db: psscript
  register: drill

- name: Nightly full backup, verified and copied to S3 (MinIO) with server-side encryption
  psscript.infra.pg_backup:
    action: backup
    type: full
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive
    login_host: psscript-postgres-1
    login_user: psscript_backup
    login_password: "{{ postgres_backup_password }}"
    s3:
      bucket: psscript-backups
      prefix: prod
      endpoint_url: https://minio.example.net:9000
      access_key: "{{ s3_access_key }}"
      secret_key: "{{ s3_secret_key }}"
      sse: AES256

- name: Replace the live data directory (PostgreSQL stopped), fetching from S3 what is missing locally
  psscript.infra.pg_backup:
    action: restore
    live: true
    restore_dir: /var/lib/postgresql/data/pgdata
    login_host: psscript-postgres-1
    backup_dir: /backups/postgres
    wal_archive_dir: /wal-archive
    check_query: SELECT count(*) FROM scripts
    check_db: psscript
    s3:
      bucket: psscript-backups
      prefix: prod
      endpoint_url: https://minio.example.net:9000
      access_key: "{{ s3_access_key }}"
      secret_key: "{{ s3_secret_key }}"
  register: restored

- name: Show the newest verified full backup
  psscript.infra.pg_backup:
    action: list
    backup_dir: /backups/postgres
  register: catalog

- ansible.builtin.debug:
    msg: "{{ catalog.last_verified_full }}"
'''

RETURN = r'''
backup_id:
  description: Id of the backup taken (O(action=backup)) or, in check mode, of the type it would take.
  returned: action is backup, success
  type: str
  sample: 20250131T020000Z-incremental
backup:
  description:
    - Catalog entry of the backup taken, without its per-file hashes (its C(file_count) counts them).
    - Times are UTC from the server's clock; C(stop_lsn) and C(wal_stop) mark the end of the WAL the backup needs.
    - C(wal_sha256) is the SHA-256 of each archived WAL file of the backup's own range when it was taken; restores
      compare it before replaying.
    - C(manifest_checksums) is the algorithm of the file checksums in C(backup_manifest), V(CRC32C) (plain backups
      taken by earlier versions of the collection say V(SHA256)); the catalog's own SHA-256 hashes are the
      module's, of each file of a plain backup and of the archive of a compressed one;
      C(compression) is how a compressed backup was compressed (V(client-zstd)), null when plain.
    - C(sealed) is false for a plain backup until its first verify (see the description).
  returned: action is backup, not in check mode
  type: dict
  sample:
    id: 20250131T020000Z-incremental
    type: incremental
    parent: 20250130T020000Z-full
    started_at: '2025-01-31T02:00:00.120000Z'
    stopped_at: '2025-01-31T02:00:04.870000Z'
    start_lsn: 0/5000028
    stop_lsn: 0/5000158
    timeline: 1
    wal_start: '000000010000000000000005'
    wal_stop: '000000010000000000000005'
    wal_sha256: {'000000010000000000000005': 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
    system_identifier: '7466001234567890123'
    server_version: '17.2 (Debian 17.2-1)'
    layout: plain
    compressed: false
    bytes: 3145728
    data_bytes: 3100000
    file_count: 1021
    manifest_checksums: CRC32C
    compression: null
    durations: {basebackup: 3.2, hash: 0.1, wal_wait: 0.0, sync: 0.2, total: 4.0}
    sealed: false
    verified: null
  contains: &catalog_entry
    id:
      description: Backup id, C(<UTC stamp>-<type>).
      returned: always
      type: str
      sample: 20250131T020000Z-full
    type:
      description: V(full) or V(incremental).
      returned: always
      type: str
      sample: full
    parent:
      description: Id of the backup an incremental builds on, null for a full one.
      returned: always
      type: str
    started_at:
      description: When the backup started (UTC, ISO 8601).
      returned: always
      type: str
      sample: '2025-01-31T02:00:00.120000Z'
    stopped_at:
      description: When the backup ended (UTC, ISO 8601); catalogs are ordered by it.
      returned: always
      type: str
      sample: '2025-01-31T02:00:04.870000Z'
    bytes:
      description: Bytes the backup holds on disk.
      returned: always
      type: int
      sample: 3145728
    file_count:
      description: Number of files the catalog records (with their SHA-256 once sealed).
      returned: always
      type: int
      sample: 1021
    sealed:
      description:
        - Whether the catalog records the SHA-256 of every file. False for a plain backup until its first verify
          passes; absent from entries written by earlier versions of the collection, which are sealed.
      returned: when recorded
      type: bool
    verified:
      description: Outcome of the last verification, null when never verified.
      returned: always
      type: bool
    verified_at:
      description: When it was last verified, or null.
      returned: always
      type: str
    verify_error:
      description: The problems the last failed verification found, or null.
      returned: always
      type: str
    s3:
      description: Its upload summary (as RV(s3) of O(action=backup)) and the last check of the copy.
      returned: when copied to S3
      type: dict
    start_lsn:
      description: WAL position the backup starts at.
      returned: always
      type: str
      sample: 0/5000028
    stop_lsn:
      description: WAL position the backup ends at.
      returned: always
      type: str
      sample: 0/5000158
    timeline:
      description: Timeline the backup was taken on.
      returned: always
      type: int
      sample: 1
    wal_start:
      description: First WAL segment the backup needs.
      returned: always
      type: str
      sample: '000000010000000000000005'
    wal_stop:
      description: Last WAL segment the backup needs.
      returned: always
      type: str
      sample: '000000010000000000000005'
    wal_files:
      description: The WAL files of the backup's own range (timeline history files included).
      returned: always
      type: list
      elements: str
    wal_sha256:
      description: SHA-256 of each of those WAL files when the backup was taken, by name.
      returned: always
      type: dict
    system_identifier:
      description: System identifier of the cluster (as a string).
      returned: always
      type: str
    server_version:
      description: Version of the server the backup was taken from.
      returned: always
      type: str
    server_version_num:
      description: The same as a number (V(170002)); restores pick the client tools of its major.
      returned: always
      type: int
    layout:
      description: V(plain) (a data directory) or V(tar.zst) (one compressed archive).
      returned: always
      type: str
    compressed:
      description: Whether the backup is compressed.
      returned: always
      type: bool
    compression:
      description: How a compressed backup was compressed (V(client-zstd)), null when plain.
      returned: always
      type: str
    manifest_checksums:
      description:
        - Algorithm of the file checksums in C(backup_manifest), V(CRC32C).
        - Plain backups taken by earlier versions of the collection say V(SHA256).
      returned: always
      type: str
    data_bytes:
      description: Plain size of the data directory (the space a restore needs).
      returned: always
      type: int
    durations:
      description: Seconds per step (C(basebackup), C(hash), C(wal_wait), C(sync), C(total)).
      returned: always
      type: dict
fell_back_to_full:
  description: Whether an incremental backup was asked for and a full one was taken instead (see O(fallback_to_full)).
  returned: action is backup
  type: bool
  sample: false
unsealed:
  description:
    - Ids of the other local backups that are still unsealed and did not fail verification, oldest first. A backup job
      interrupted between its backup and its verify leaves one. The C(backup) role's job verifies these next, which
      seals them.
  returned: action is backup, not in check mode
  type: list
  elements: str
  sample: []
expected_bytes:
  description: Space the backup was expected to need when free space was checked (0 when unknown).
  returned: action is backup
  type: int
  sample: 52428800
free_bytes:
  description: Free bytes of the file system of O(backup_dir) (before the backup, for O(action=backup)); null when
    O(backup_dir) does not exist.
  returned: action is backup or list
  type: int
  sample: 81604378624
total_bytes:
  description: Size of the file system of O(backup_dir) in bytes, or null when O(backup_dir) does not exist.
  returned: action is list
  type: int
  sample: 107374182400
free_percent:
  description: Free share of the file system of O(backup_dir) in percent (one decimal), or null.
  returned: action is list
  type: float
  sample: 76.0
latest_age_seconds:
  description: Seconds since the backup RV(latest) ended, or null when there is none.
  returned: action is list
  type: int
  sample: 3600
last_verified_full_age_seconds:
  description: Seconds since the backup RV(last_verified_full) ended, or null when there is none.
  returned: action is list
  type: int
  sample: 86400
newest_wal_age_seconds:
  description: Seconds since the newest WAL segment in O(wal_archive_dir) was written (by its modification time), or
    null when the archive holds none.
  returned: action is list, O(wal_archive_dir) given
  type: int
  sample: 42
backups:
  description:
    - Published backups, oldest first by recorded stop time, without per-file hashes.
    - C(restorable) says whether the backup and every parent it needs are present and did not fail verification.
  returned: action is list
  type: list
  elements: dict
  sample:
    - id: 20250130T020000Z-full
      type: full
      parent: null
      stopped_at: '2025-01-30T02:01:10.000000Z'
      verified: true
      verified_at: '2025-01-30T02:05:00.000000Z'
      restorable: true
  contains:
    <<: *catalog_entry
    restorable:
      description: Whether the backup and every parent it needs are present and did not fail verification.
      returned: always
      type: bool
    in_s3:
      description: Whether S3 holds a copy too.
      returned: O(s3) given
      type: bool
latest:
  description: Id of the newest restorable backup, or null.
  returned: action is list
  type: str
  sample: 20250131T020000Z-incremental
last_verified_full:
  description: Id of the newest full backup that passed verification, or null.
  returned: action is list
  type: str
  sample: 20250130T020000Z-full
leftovers:
  description: Directories of interrupted backups or scratch work (never listed as backups), with their age.
  returned: action is list or prune
  type: list
  elements: dict
  sample:
    - {path: /backups/postgres/.tmp-20250131T020000Z-full, name: .tmp-20250131T020000Z-full, age_seconds: 4000}
  contains: &leftover
    path:
      description: Full path of the directory.
      returned: always
      type: str
    name:
      description: Its name in O(backup_dir) (C(.tmp-<id>) for an interrupted backup, scratch directories).
      returned: always
      type: str
    age_seconds:
      description: Seconds since its newest file changed.
      returned: always
      type: int
unreadable:
  description: Backup directories whose C(catalog.json) could not be read; they are neither used nor removed.
  returned: action is list or prune
  type: list
  elements: dict
  sample: []
  contains: &unreadable
    path:
      description: Where the C(catalog.json) is (a path or an S3 URL).
      returned: always
      type: str
    id:
      description: The backup id of the directory.
      returned: always
      type: str
    error:
      description: What is wrong with it, and the fix.
      returned: always
      type: str
    parent:
      description: The parent its C(catalog.json) still names, kept by retention; null when unknown.
      returned: always
      type: str
    wal_start:
      description: The first WAL segment it still names, kept by retention; null when unknown.
      returned: always
      type: str
signed:
  description: Ids of the local entries O(action=sign) signed (in check mode, would sign).
  returned: action is sign
  type: list
  elements: str
  sample: [20250131T020000Z-full]
s3_signed:
  description: Ids of the entries in S3 O(action=sign) signed.
  returned: action is sign
  type: list
  elements: str
  sample: []
refused:
  description: Entries O(action=sign) left refused (a wrong C(hmac), or another problem), with the keys of RV(unreadable).
  returned: action is sign
  type: list
  elements: dict
  sample: []
results:
  description: One result per backup checked by O(action=verify), with the checks run and the problems found.
  returned: action is verify
  type: list
  elements: dict
  sample:
    - id: 20250131T020000Z-incremental
      ok: false
      checks: [sha256]
      problems: ['data/base/5/16384: SHA-256 9f86d0..., recorded 2c26b4...']
  contains:
    id:
      description: Backup id.
      returned: always
      type: str
    ok:
      description: Whether every check passed (locally and, when in S3, of the copy).
      returned: always
      type: bool
    checks:
      description:
        - The checks run, in order. V(sha256) compared every file with the catalog; V(sha256 (to seal)) hashed the files
          of an unsealed backup, whose hashes are recorded when every check passed (not in check mode).
      returned: always
      type: list
      elements: str
    problems:
      description: What failed, one line each; copies in S3 are prefixed C(S3).
      returned: always
      type: list
      elements: str
    local:
      description: V(false) when only the S3 copy exists (nothing local was checked).
      returned: the backup is only in S3
      type: bool
    s3:
      description: The check of the S3 copy (C(ok), C(url), C(checks), C(problems)).
      returned: the backup is in S3
      type: dict
removed:
  description: Ids of the backups O(action=prune) removed (or would remove, in check mode), oldest first.
  returned: action is prune
  type: list
  elements: str
  sample: [20241201T020000Z-full]
kept:
  description: Ids of the backups retention keeps, oldest first, with why in RV(reasons).
  returned: action is prune
  type: list
  elements: str
  sample: [20250130T020000Z-full, 20250131T020000Z-incremental]
reasons:
  description: For each kept backup, the rules that keep it.
  returned: action is prune
  type: dict
  sample: {20250130T020000Z-full: [newest verified full backup, parent of kept 20250131T020000Z-incremental]}
oldest_wal_needed:
  description: Oldest WAL segment a kept backup needs (the start of the oldest kept backup); older WAL may go.
  returned: action is prune
  type: str
  sample: '000000010000000000000005'
removed_wal:
  description: WAL archive files removed (or that would be), as a count and the first and last name.
  returned: action is prune
  type: dict
  sample: {count: 120, first: '000000010000000000000001', last: '000000010000000000000004'}
  contains: &wal_files
    count:
      description: How many WAL files.
      returned: always
      type: int
    first:
      description: The first (oldest) name, or null.
      returned: always
      type: str
    last:
      description: The last name, or null.
      returned: always
      type: str
restored_chain:
  description: Ids of the backups O(action=restore) combined, full first (or would combine, in check mode).
  returned: action is restore
  type: list
  elements: str
  sample: [20250130T020000Z-full, 20250131T020000Z-incremental]
recovery_target:
  description: The recovery target in words.
  returned: action is restore
  type: str
  sample: recovery_target_time 2025-01-31T13:45:00.000000Z
target_reached:
  description:
    - Whether the target was reached (always true on success). The server log must confirm it and, for the end of the
      archived WAL, replay must have ended in the newest archived segment (RV(wal_check)).
  returned: action is restore, not in check mode
  type: bool
  sample: true
wal_check:
  description:
    - The WAL replay reads, as checked before the restore (and again after the WAL from S3 is fetched).
    - C(first) and C(last) are the first and last segment of the unbroken run replay reads from the backup's start,
      C(segments) their number, C(timeline) the recovery timeline and C(timelines) its history (oldest first).
    - C(newest) is the newest archived segment of that path; C(gaps) the segments missing before it (a restore to the
      end is refused when there are any; a point-in-time restore only warns).
    - C(checked) segments had their size, first page header and readability checked, C(hashed) of them also a SHA-256
      the catalog recorded; C(unchecked) are in S3 only (check mode; they are checked against S3's SHA-256 when fetched).
    - C(not_replayed) counts archived segments from the backup's start on that replay does not read (a parent's copy
      of the segment a timeline began in, branches abandoned by earlier restores).
  returned: action is restore
  type: dict
  sample:
    timeline: 2
    timelines: [1, 2]
    first: '000000010000000000000005'
    last: '00000002000000000000000C'
    segments: 8
    newest: '00000002000000000000000C'
    gaps: []
    checked: 8
    hashed: 1
    unchecked: 0
    not_replayed: 2
  contains:
    timeline:
      description: The recovery timeline.
      returned: always
      type: int
    timelines:
      description: Its history, oldest first.
      returned: always
      type: list
      elements: int
    first:
      description: First segment of the unbroken run replay reads.
      returned: always
      type: str
    last:
      description: Last segment of that run.
      returned: always
      type: str
    segments:
      description: Number of segments in that run.
      returned: always
      type: int
    newest:
      description: Newest archived segment of that path.
      returned: always
      type: str
    gaps:
      description: Segments missing before it.
      returned: always
      type: list
      elements: str
    checked:
      description: Segments whose size, first page header and readability were checked.
      returned: always
      type: int
    hashed:
      description: Of those, segments also compared with a SHA-256 the catalog recorded.
      returned: always
      type: int
    unchecked:
      description: Segments only in S3, checked when fetched.
      returned: always
      type: int
    not_replayed:
      description: Archived segments from the backup's start on that replay does not read.
      returned: always
      type: int
recovery_end:
  description:
    - Where replay ended, from the history file of the timeline the recovery created - C(lsn), the end of the last
      record replayed; C(timeline), the timeline it was on; C(new_timeline), the one the restored server starts on.
  returned: action is restore, not in check mode, when recovery ran
  type: dict
  sample: {lsn: 0/D000000, timeline: 2, new_timeline: 3}
  contains:
    lsn:
      description: End of the last record replayed.
      returned: always
      type: str
    timeline:
      description: The timeline replay was on.
      returned: always
      type: int
    new_timeline:
      description: The timeline the restored server starts on.
      returned: always
      type: int
recovery_stop:
  description: The log line saying where recovery stopped (C(recovery stopping before commit ...)), or for the end of
    the WAL the C(redo done at ...) line.
  returned: action is restore, not in check mode
  type: str
  sample: 'recovery stopping before commit of transaction 771, time 2025-01-31 13:45:02.131+00'
check_result:
  description: Output of O(check_query) on the restored database.
  returned: action is restore and O(check_query) was given, not in check mode
  type: str
  sample: '1042'
recovery_log:
  description: Last lines of the temporary server's log (also on failure).
  returned: action is restore, not in check mode
  type: list
  elements: str
  sample: ['2025-02-01 10:00:03.001 UTC [77] LOG:  archive recovery complete']
downloaded_from_s3:
  description: Ids of the backups O(action=restore) downloaded from S3 because they were missing locally (or would).
  returned: action is restore
  type: list
  elements: str
  sample: [20250130T020000Z-full]
age_identity_needed:
  description:
    - Whether O(action=restore) reads S3 objects encrypted with age (a backup it downloads, or WAL only S3 has), so
      it needs O(s3.age_identity_file). Without that file a restore fails with this said, before anything is
      downloaded or built; a plan (check mode) only reports it.
  returned: action is restore
  type: bool
  sample: true
wal_from_s3:
  description: Number of WAL files O(action=restore) fetched from S3 because the archive lacked them.
  returned: action is restore, O(s3) given, not in check mode
  type: int
  sample: 12
live:
  description: Whether O(action=restore) replaced the live data directory (O(live)).
  returned: action is restore
  type: bool
  sample: true
previous_data_dir:
  description: Where the data directory that O(live=true) replaced was moved (null when there was none).
  returned: action is restore, O(live=true), success
  type: str
  sample: /var/lib/postgresql/data/pgdata.before-20250131T020000Z-incremental-20250201T101500Z
history_marked:
  description: Timeline history files of the restored directory marked ready for the live server to archive (O(live=true)).
  returned: action is restore, O(live=true), success
  type: list
  elements: str
  sample: ['00000003.history']
restored_copy:
  description: The restored and verified directory left beside the live one when a server was started during the
    restore, so the swap was not done.
  returned: action is restore, O(live=true), failure
  type: str
  sample: /var/lib/postgresql/data/pgdata.restore-20250131T020000Z-incremental-20250201T101500Z
postmaster_pid:
  description: The fields of C(postmaster.pid) of the live directory when O(live=true) refused to replace it.
  returned: action is restore, O(live=true), refused
  type: dict
  sample: {pid: 1, port: '5432', status: ready}
  contains:
    pid:
      description: Process id in C(postmaster.pid).
      returned: always
      type: int
    port:
      description: Port in C(postmaster.pid).
      returned: always
      type: str
    status:
      description: Status line of C(postmaster.pid) (V(ready), V(stopping)).
      returned: always
      type: str
s3:
  description:
    - O(action=backup) with O(s3) - the upload of the backup (objects, bytes, seconds, when it was verified) and of the
      WAL (C(wal), counts of WAL files uploaded and already present).
    - O(action=prune) with O(s3) - what retention removed in S3 (C(removed), C(kept), C(reasons), C(oldest_wal_needed),
      C(removed_wal)), as for the local catalog.
  returned: action is backup or prune, O(s3) given, not in check mode for backup
  type: dict
  sample:
    id: 20250131T020000Z-full
    url: s3://backups/prod/postgres/20250131T020000Z-full/
    objects: 1024
    bytes: 52428800
    sse: AES256
    upload_seconds: 4.2
    verify_seconds: 2.9
    uploaded_at: '2025-01-31T02:01:20.000000Z'
    verified_at: '2025-01-31T02:01:23.000000Z'
    wal: {uploaded: 3, present: 40, first: '000000010000000000000029', last: '00000001000000000000002B'}
  contains:
    id:
      description: Backup id.
      returned: action is backup
      type: str
    url:
      description: Where the copy is.
      returned: action is backup
      type: str
    objects:
      description: Objects uploaded (the files and C(catalog.json)).
      returned: action is backup
      type: int
    bytes:
      description: Bytes uploaded.
      returned: action is backup
      type: int
    sse:
      description: Server-side encryption asked for, or null.
      returned: action is backup
      type: str
    upload_seconds:
      description: Seconds the upload took.
      returned: action is backup
      type: float
    verify_seconds:
      description: Seconds the check of the copy took (every object read back through SHA-256).
      returned: action is backup
      type: float
    uploaded_at:
      description: When the upload ended.
      returned: action is backup
      type: str
    verified_at:
      description: When the copy was checked.
      returned: action is backup
      type: str
    wal:
      description: WAL copied to S3 before the backup - C(uploaded), C(present), C(first), C(last).
      returned: action is backup
      type: dict
    removed:
      description: Ids removed from S3 (or that would be).
      returned: action is prune
      type: list
      elements: str
    kept:
      description: Ids retention keeps in S3.
      returned: action is prune
      type: list
      elements: str
    reasons:
      description: For each kept id, the rules that keep it.
      returned: action is prune
      type: dict
    incomplete:
      description: Ids in S3 without C(catalog.json) (interrupted uploads).
      returned: action is prune
      type: list
      elements: str
    oldest_wal_needed:
      description: Oldest WAL segment a kept copy needs.
      returned: action is prune
      type: str
    removed_wal:
      description: WAL removed from S3, as a count and the first and last name.
      returned: action is prune
      type: dict
      contains: *wal_files
s3_backups:
  description:
    - The backups in S3 (those whose C(catalog.json) was uploaded), oldest first by stop time, as RV(backups), each with
      C(local) (whether O(backup_dir) has it too). Local entries in RV(backups) then carry C(in_s3).
  returned: action is list, O(s3) given
  type: list
  elements: dict
  sample:
    - {id: 20250130T020000Z-full, type: full, restorable: true, local: false}
  contains:
    <<: *catalog_entry
    restorable:
      description: Whether the copy and every parent it needs are in S3 and did not fail verification.
      returned: always
      type: bool
    local:
      description: Whether O(backup_dir) holds it too.
      returned: always
      type: bool
s3_latest:
  description: Id of the newest restorable backup in S3, or null.
  returned: action is list, O(s3) given
  type: str
  sample: 20250130T020000Z-full
s3_incomplete:
  description: Backup ids in S3 without C(catalog.json) (an interrupted upload); never restored.
  returned: action is list, O(s3) given
  type: list
  elements: str
  sample: []
s3_unreadable:
  description: Backups in S3 whose C(catalog.json) could not be read.
  returned: action is list, O(s3) given
  type: list
  elements: dict
  sample: []
  contains: *unreadable
removed_leftovers:
  description: Leftover directories removed by O(action=prune) (older than O(stale_after_hours)).
  returned: action is prune
  type: list
  elements: dict
  sample: []
  contains: *leftover
wal_uploaded:
  description: WAL files O(action=ship_wal) copied to S3, in upload order.
  returned: action is ship_wal
  type: list
  elements: str
  sample: ['000000010000000000000042', '000000010000000000000043']
wal_shipping:
  description:
    - How far the WAL in S3 is behind the archive. C(lag_seconds) is the age of the oldest archived file S3 lacks
      (0 when it lacks none), so what a lost server would lose beyond the segment still being written.
    - C(pending) counts archived files S3 lacks; C(newest_archived) and C(newest_in_s3) are the newest segments.
    - O(action=ship_wal) adds C(passes), C(failures) and C(last_error).
  returned: action is ship_wal, or action is list with O(s3) and O(wal_archive_dir)
  type: dict
  sample:
    newest_archived: '000000010000000000000043'
    newest_in_s3: '000000010000000000000043'
    pending: 0
    oldest_pending: null
    lag_seconds: 0
  contains:
    newest_archived:
      description: Newest segment in the archive.
      returned: always
      type: str
    newest_in_s3:
      description: Newest segment in S3.
      returned: always
      type: str
    pending:
      description: Archived files S3 lacks.
      returned: always
      type: int
    oldest_pending:
      description: Oldest archived file S3 lacks, or null.
      returned: always
      type: str
    lag_seconds:
      description: Age of the oldest archived file S3 lacks; 0 when it lacks none.
      returned: always
      type: int
    passes:
      description: Shipping passes run.
      returned: action is ship_wal
      type: int
    failures:
      description: Passes that failed.
      returned: action is ship_wal
      type: int
    last_error:
      description: The error of the last failed pass, or null.
      returned: action is ship_wal
      type: str
restore_dir:
  description: The data directory restored into (normalized O(restore_dir)).
  returned: action is restore
  type: str
  sample: /var/lib/postgresql/data
'''

import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.psscript.infra.plugins.module_utils import _backupmod, _catalog, _files, _pg, _pgbackup, _s3, _walship
from ansible_collections.psscript.infra.plugins.module_utils._diskspace import human_bytes
from ansible_collections.psscript.infra.plugins.module_utils._pgbackup import BackupError


def find_tools(module, major, names=_pgbackup.TOOLS):
    """The PostgreSQL client tools of the backups' major version (they must match the server)."""
    def check(path):
        rc, out, err = module.run_command([path, '--version'])
        found = _pgbackup.tool_major(out or err)
        if found != major:
            return ('%s is PostgreSQL %s but the backups are PostgreSQL %s: install the %s client tools (they must '
                    'match the server)' % (path, found, major, major))
        return None
    return _backupmod.find_tools(module, names, '%%(name)s was not found: install the PostgreSQL %d client tools '
                                 '(postgresql-client-%d) or run the module in the psscript/backup image' % (major, major),
                                 opt_dirs=['/usr/lib/postgresql/%d/bin' % major], check=check)


def s3_store(module):
    return _backupmod.s3_store(module, 'postgres')


def check_backup_params(module, params):
    if not params['wal_archive_dir']:
        module.fail_json(msg='action=backup needs wal_archive_dir: backups hold no WAL, and one is published only when '
                             'its WAL is in the archive')
    if not os.path.isdir(params['wal_archive_dir']):
        module.fail_json(msg='wal_archive_dir %s is not a directory: mount the WAL archive volume there'
                             % params['wal_archive_dir'])


def check_server(module, params, facts):
    if facts['in_recovery']:
        module.fail_json(msg='%s:%s is a standby: take backups from the primary' % (params['login_host'], params['login_port']))
    if facts['archive_mode'] == 'off':
        module.fail_json(msg='archive_mode is off on the server: these backups hold no WAL and need the WAL archive; '
                             'turn on archive_mode and set archive_command to copy into wal_archive_dir')


def do_backup(module, root):
    params = dict(module.params)
    params['db'] = params['db'] or 'postgres'
    check_backup_params(module, params)
    result = dict(changed=False, fell_back_to_full=False)
    lock = _backupmod.open_root(module, root, result)
    conn = None
    try:
        entries = _backupmod.entries(root)
        conn = _pg.connect_postgres(params)
        facts = _pgbackup.server_facts(conn)
        major = facts['version_num'] // 10000
        check_server(module, params, facts)
        backup_type, parent = params['type'], None
        if backup_type == 'incremental':
            parent, why = _pgbackup.incremental_parent(facts, entries, root)
            if why:
                backup_type, parent = _backupmod.full_instead(module, result, why)
        tools = find_tools(module, major, ('pg_basebackup',))
        if params['compress']:
            for name in ('tar', 'zstd'):
                module.get_bin_path(name, required=True)
        needed, source = _pgbackup.expected_size(entries, facts.get('database_bytes'), params['compress'])
        result['expected_bytes'] = needed
        result['free_bytes'] = _backupmod.check_space(root, needed, source)
        if module.check_mode:
            result.update(changed=True, backup_id=_catalog.new_backup_id(backup_type),
                          msg='Would take a %s backup%s into %s (expected size %s: %s)'
                          % (backup_type, ' on top of %s' % parent['id'] if parent else '', root,
                             human_bytes(needed), source))
            module.exit_json(**result)

        def clock_now():
            return _pgbackup.server_now(conn)

        def on_wal_missing(missing):
            problem = _pgbackup.switch_wal(conn)
            if problem:
                module.warn(problem)

        def attempt(kind, base):
            return _pgbackup.take_backup(module.run_command, tools, params, root, kind, base, params['wal_archive_dir'],
                                         facts, params['compress'], clock_now, on_wal_missing,
                                         max_rate=params['max_rate'], wal_wait_timeout=params['wal_wait_timeout'])
        try:
            entry = attempt(backup_type, parent)
        except BackupError as err:
            if backup_type != 'incremental' or err.kind not in ('wal_summaries', 'parent_mismatch'):
                raise
            entry = attempt(*_backupmod.full_instead(module, result, err.msg))
        _backupmod.took(result, entry, 'Took %s backup %s (%s)' % (entry['type'], entry['id'], human_bytes(entry['bytes'])))
        result['unsealed'] = [e['id'] for e in entries if not _catalog.is_sealed(e) and _catalog.usable(e)]
        store = s3_store(module)
        if store is not None:
            copy_to_s3(module, root, entry, store, major, result)
        return result
    except BackupError as err:
        if err.kind == 'wal_missing' and conn is not None:
            module.fail_json(msg='%s. %s' % (err.msg, _pgbackup.archiver_status(conn)), **result)
        module.fail_json(msg=err.msg, **result)
    finally:
        if conn is not None:
            conn.close()
        if lock is not None:
            lock.release()


def copy_to_s3(module, root, entry, store, major, result):
    """Verify the backup just taken (with its WAL), then copy its WAL and itself to S3 and check the copy."""
    outcome = _pgbackup.verify_backup(module.run_command, find_tools(module, major), root, entry,
                                      _catalog.list_backups(root)['backups'],
                                      wal_archive_dir=module.params['wal_archive_dir'],
                                      scratch_root=module.params['scratch_dir'])

    def upload_wal():
        # The WAL first: a backup listed in S3 always has the WAL that makes it usable there.
        since = _pgbackup.oldest_wal_start(store.list_entries() + [entry])
        return dict(wal=_pgbackup.upload_wal(store, module.params['wal_archive_dir'], since,
                                             required=entry.get('wal_files') or []))
    return _backupmod.copy_to_s3(result, store, root, entry, outcome, 'backup', '. Take a new full backup',
                                 before_upload=upload_wal)


def do_list(module, root):
    store = s3_store(module)
    result = _backupmod.listing(root, store, _catalog.listing, _catalog.utc_now())
    archive = module.params['wal_archive_dir']
    if archive and os.path.isdir(archive):
        result['newest_wal_age_seconds'] = _pgbackup.newest_wal_age(archive, time.time())
    if store is not None and archive:
        result['wal_shipping'] = _walship.Shipper(store, archive).lag()
    return result


def do_verify(module, root):
    tools_by_major = {}

    def verify_local(entry, entries):
        major = int(entry.get('server_version_num') or 170000) // 10000
        if major not in tools_by_major:
            tools_by_major[major] = find_tools(module, major)
        return _pgbackup.verify_backup(module.run_command, tools_by_major[major], root, entry, entries,
                                       wal_archive_dir=module.params['wal_archive_dir'],
                                       scratch_root=module.params['scratch_dir'])
    return _backupmod.verify(module, root, s3_store(module), verify_local, 'backup', 'take a new full backup')


def do_prune(module, root):
    """Retention over the backups and the WAL no kept backup needs, locally and in S3."""
    archive = module.params['wal_archive_dir']

    def remove_wal(oldest):
        if not archive or not oldest:
            return []
        wal = _catalog.wal_files_to_remove(os.listdir(archive), oldest)
        if wal and not module.check_mode:
            for name in wal:
                os.unlink(os.path.join(archive, name))
            _files.fsync_path(archive, directory=True)
        return wal

    def remove_s3_wal(store, oldest):
        wal = _catalog.wal_files_to_remove(list(store.list_area(_pgbackup.S3_WAL_AREA)), oldest) if oldest else []
        if not module.check_mode:
            store.remove_area(_pgbackup.S3_WAL_AREA, wal)
        return wal
    return _backupmod.prune(module, root, s3_store(module), 'backup', remove_wal, remove_s3_wal)


def refuse_running_server(module, data_dir):
    state = _pgbackup.live_dir_state(data_dir, module.params['login_host'], module.params['login_port'])
    if not state['ok']:
        module.fail_json(msg='Refusing to replace the live data directory %s: %s. Nothing was changed' % (data_dir, state['why']),
                         postmaster_pid=state['postmaster_pid'])


def check_wal(module, store, backup, to_end, recorded, major, dest=None):
    """The WAL check before a restore (_pgbackup.check_replay) over the archive and its S3 copy. With ``dest`` the
    WAL only S3 has is fetched there first (and checked); without it only S3's history files are fetched, into a
    temporary directory, and its segments are counted as ``unchecked``. Returns ``(plan, fetched names)``."""
    archive = module.params['wal_archive_dir']
    only_s3 = _pgbackup.s3_only_wal(store, archive, backup['wal_start']) if store is not None else []
    scratch = None if dest or not only_s3 else tempfile.mkdtemp(prefix='psscript-wal-check-')
    try:
        wanted = only_s3 if dest else [n for n in only_s3 if _pgbackup.HISTORY_RE.match(n)]
        fetched = _pgbackup.fetch_wal(store, archive, dest or scratch, None, names=wanted) if wanted else []
        plan = _pgbackup.check_replay(backup, [archive] + ([dest or scratch] if fetched else []), to_end,
                                      more_names=only_s3, recorded=recorded, major=major,
                                      run_as=module.params['restore_user'])
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return plan, fetched


def needs_identity(store, archive, download, newest):
    """Whether the restore reads age-encrypted S3 objects: a backup it downloads, or the WAL only S3 has (its
    first segment tells: the S3 settings encrypt every segment or none)."""
    if store is None:
        return False
    if store.encrypted_ids(download):
        return True
    segments = [n for n in _pgbackup.s3_only_wal(store, archive, newest['wal_start']) if _pgbackup.SEGMENT_RE.match(n)]
    return bool(store.area_encrypted(_pgbackup.S3_WAL_AREA, segments[:1]))


def recorded_wal_hashes(entries):
    """``{WAL file name: SHA-256}`` that the backups recorded of their own WAL when they were taken."""
    recorded = {}
    for entry in entries:
        recorded.update(entry.get('wal_sha256') or {})
    return recorded


def verify_chain(module, tools, root, members, entries, live):
    """pg_verifybackup (with the archived WAL when the archive holds the backup's WAL) of every local
    backup of the chain, under the restore's lock: what is verified is what is restored. Their SHA-256
    were compared with the catalog at the start of this restore (check_chain_hashes, under the same
    lock), so verify_backup does not hash them again. (Copies fetched from S3 are checked against the
    catalog's hashes as they are downloaded.)"""
    archive = module.params['wal_archive_dir']
    for member in members:
        # WAL that only S3 still has is fetched later, and checked then (check_replay): pg_verifybackup parses
        # the backup's own WAL here only when the archive holds all of it.
        local_wal = all(os.path.exists(os.path.join(archive, name)) for name in member.get('wal_files') or [])
        outcome = _pgbackup.verify_backup(module.run_command, tools, root, member, entries,
                                          wal_archive_dir=archive if local_wal else None,
                                          scratch_root=module.params['scratch_dir'], hashes_checked=True)
        if not outcome['ok']:
            module.fail_json(msg='Restore refused: backup %s fails verification (%s): %s. Nothing was changed%s; restore '
                                 'another backup (backup_id, target_time)'
                                 % (member['id'], ', '.join(outcome['checks']), '; '.join(outcome['problems'][:5]),
                                    ' (the live data directory was not touched)' if live else ''),
                             verified=outcome)


def do_restore(module, root):
    """A plan (check mode) reads without a lock. A restore holds the root's readers lock, shared, from
    choosing the chain to its end: prune (exclusive) cannot delete a backup or WAL it reads, while
    backups, which only add, still run."""
    if module.check_mode:
        return restore(module, root)
    _catalog.ensure_dir(root)
    with _catalog.RootLock(root, readers=True, shared=True):
        return restore(module, root)


def restore(module, root):
    params = module.params
    for name in ('restore_dir', 'wal_archive_dir'):
        if not params[name]:
            module.fail_json(msg='action=restore needs %s' % name)
    live = params['live']
    restore_dir = os.path.normpath(params['restore_dir'])
    if live:
        refuse_running_server(module, restore_dir)
    store = s3_store(module)
    entries = _catalog.list_backups(root)['backups']
    local_ids = set(e['id'] for e in entries)
    remote = [e for e in store.list_entries() if e['id'] not in local_ids] if store is not None else []
    target_time = _catalog.parse_time(params['target_time']) if params['target_time'] else None
    immediate = target_time is None and params['backup_id'] not in ('latest', None, '') and not params['to_end']
    if params['backup_id'] == 'all':
        module.fail_json(msg='backup_id=all is for action=verify; restore takes one backup id or latest')
    members = _catalog.select_backup(entries + remote, target=params['backup_id'], target_time=target_time)
    ids = [m['id'] for m in members]
    download = [i for i in ids if i not in local_ids]
    target = _pgbackup.describe_target(target_time, immediate)
    to_end = target_time is None and not immediate
    result = dict(restored_chain=ids, recovery_target=target, restore_dir=restore_dir, downloaded_from_s3=download,
                  live=live)
    # Checksums before anything is touched: a damaged local backup is refused here, in check mode too.
    _pgbackup.check_chain_hashes(root, [m for m in members if m['id'] in local_ids])
    # And the WAL replay will read: a gap or a damaged segment is refused here too, before anything is built.
    major = int(members[-1].get('server_version_num') or 170000) // 10000
    recorded = recorded_wal_hashes(entries + remote)
    plan, dummy = check_wal(module, store, members[-1], to_end, recorded, major)
    result['wal_check'] = _pgbackup.replay_summary(plan)
    result['age_identity_needed'] = needs_identity(store, params['wal_archive_dir'], download, members[-1])
    if result['age_identity_needed'] and not module.check_mode:
        try:  # Before anything is downloaded or built: without the key nothing here could be restored.
            store.check_identity('The S3 copies this restore reads are encrypted with age')
        except _s3.S3Error as err:
            module.fail_json(msg='Restore refused: %s. Nothing was changed' % err.msg, **result)
    if module.check_mode or store is None:
        for warning in plan['warnings']:
            module.warn(warning)
    if module.check_mode:
        result.update(changed=True, msg='Would %srestore %s into %s%s and recover it to %s (WAL %s to %s, timeline %s)'
                      % ('download %s from S3, ' % ', '.join(download) if download else '', ' + '.join(ids), restore_dir,
                         ' (moving the current data aside)' if live else '', target, result['wal_check']['first'],
                         result['wal_check']['last'], plan['timeline']))
        return result
    tools = find_tools(module, major, ('pg_combinebackup', 'pg_verifybackup'))
    for name in ('pg_ctl', 'psql'):
        tools[name] = module.get_bin_path(name, required=True, opt_dirs=['/usr/lib/postgresql/%d/bin' % major])
    if download:
        _catalog.ensure_dir(root)
        with _catalog.RootLock(root):
            for backup_id in download:
                store.download(root, backup_id)
        members = _catalog.chain(_catalog.list_backups(root)['backups'], ids[-1])
        _pgbackup.check_chain_hashes(root, members)
    # After the downloads: an incremental's check combines it with its parents, which may come from S3.
    verify_chain(module, tools, root, [m for m in members if m['id'] in local_ids],
                 _catalog.list_backups(root)['backups'], live)
    parent = os.path.dirname(restore_dir)
    if not os.path.isdir(parent):
        module.fail_json(msg='The parent of restore_dir (%s) does not exist: create it or choose another place' % parent)
    build_dir, moved_aside = restore_dir, None
    if live:
        build_dir, moved_aside = _pgbackup.live_names(restore_dir, ids[-1], _catalog.utc_now())
    wal_dir = None
    try:
        extra = []
        if store is not None:
            wal_dir = tempfile.mkdtemp(prefix='.wal-from-s3-', dir=parent)
            plan, fetched = check_wal(module, store, members[-1], to_end, recorded, major, dest=wal_dir)
            result.update(wal_from_s3=len(fetched), wal_check=_pgbackup.replay_summary(plan))
            for warning in plan['warnings']:
                module.warn(warning)
            extra = [wal_dir] if fetched else []
        outcome = _pgbackup.restore_backup(module.run_command, tools, root, members, build_dir,
                                           params['wal_archive_dir'], target_time=target_time, immediate=immediate,
                                           run_as=params['restore_user'], timeout=params['restore_timeout'],
                                           check_query=params['check_query'], check_db=params['check_db'],
                                           scratch_root=params['scratch_dir'], extra_wal_dirs=extra, replay_plan=plan,
                                           mark_history=live)
    except BackupError as err:
        partial = getattr(err, 'result', {}) or {}
        untouched = '. The live data directory %s was not touched' % restore_dir if live else ''
        module.fail_json(msg=err.msg + untouched, restored_chain=ids, recovery_target=target,
                         target_reached=partial.get('reached', False), recovery_stop=partial.get('stop'),
                         recovery_end=partial.get('end'), recovery_log=partial.get('recovery_log', []),
                         downloaded_from_s3=download, wal_check=result['wal_check'])
    finally:
        if wal_dir:
            shutil.rmtree(wal_dir, ignore_errors=True)
    result.update(changed=True, target_reached=outcome['reached'], recovery_stop=outcome['stop'],
                  recovery_end=outcome['end'], check_result=outcome['check_result'], recovery_log=outcome['recovery_log'],
                  msg='Restored %s into %s and recovered it to %s' % (' + '.join(ids), restore_dir, target))
    if to_end and outcome['end']:
        result['msg'] += ' (replay ended at %s; newest archived segment %s)' % (
            outcome['end']['lsn'], result['wal_check']['newest'])
    if live:
        result['history_marked'] = outcome['history_marked']
        # Only now, with the restored copy proven, does the live directory change: two renames.
        state = _pgbackup.live_dir_state(restore_dir, params['login_host'], params['login_port'])
        if not state['ok']:
            module.fail_json(msg='Restored and verified %s in %s, but did not swap it in: %s. The live data is unchanged'
                             % (' + '.join(ids), build_dir, state['why']), restored_copy=build_dir, **result)
        result['previous_data_dir'] = _pgbackup.swap_live(restore_dir, build_dir, moved_aside)
        result['msg'] += '; the previous data directory is %s' % (result['previous_data_dir'] or 'none (there was none)')
    return result


def do_ship_wal(module):
    """Copy the archived WAL S3 lacks: one pass, or a loop of ship_for seconds (_walship)."""
    params = module.params
    if not params['s3'] or not params['wal_archive_dir']:
        module.fail_json(msg='action=ship_wal needs s3 (where to) and wal_archive_dir (the archive to copy from)')
    if not os.path.isdir(params['wal_archive_dir']):
        module.fail_json(msg='wal_archive_dir %s does not exist: check the path (and the volume mount)'
                             % params['wal_archive_dir'])
    shipper = _walship.Shipper(s3_store(module), params['wal_archive_dir'])
    if module.check_mode:
        lagging = shipper.lag()
        return dict(changed=lagging['pending'] > 0, wal_uploaded=[], wal_shipping=lagging,
                    msg='Would copy %d WAL file(s) to S3' % lagging['pending'])
    totals = _walship.run(shipper, params['ship_interval'], duration=params['ship_for'])
    if totals['failed_last']:
        module.fail_json(msg='Shipping WAL to S3 failed: %s' % totals['last_error'], wal_uploaded=totals['uploaded'])
    shipping = shipper.lag()
    shipping.update((k, totals[k]) for k in ('passes', 'failures', 'last_error'))
    return dict(changed=bool(totals['uploaded']), wal_uploaded=totals['uploaded'], wal_shipping=shipping,
                msg='Copied %d WAL file(s) to S3; %d archived file(s) not in S3'
                    % (len(totals['uploaded']), shipping['pending']))


ACTIONS = dict(backup=do_backup, ship_wal=lambda module, root: do_ship_wal(module), list=do_list, verify=do_verify,
               restore=do_restore, prune=do_prune, sign=lambda module, root: _backupmod.sign(module, root, s3_store(module)))


def main():
    argument_spec = _pg.pg_connection_spec()
    argument_spec.update(_catalog.catalog_spec())
    argument_spec.update(
        action=dict(type='str', required=True, choices=['backup', 'verify', 'list', 'prune', 'restore', 'ship_wal', 'sign']),
        ship_interval=dict(type='int', default=5),
        ship_for=dict(type='int', default=0),
        wal_archive_dir=dict(type='path'),
        type=dict(type='str', default='full', choices=['full', 'incremental']),
        fallback_to_full=dict(type='bool', default=False),
        compress=dict(type='bool', default=False),
        max_rate=dict(type='str'),
        wal_wait_timeout=dict(type='int', default=120),
        backup_id=dict(type='str', default='latest'),
        to_end=dict(type='bool', default=False),
        scratch_dir=dict(type='path'),
        target_time=dict(type='str'),
        restore_dir=dict(type='path'),
        restore_user=dict(type='str', default='postgres'),
        restore_timeout=dict(type='int', default=600),
        check_query=dict(type='str'),
        check_db=dict(type='str', default='postgres'),
        live=dict(type='bool', default=False),
    )
    argument_spec.update(_s3.s3_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not _pg.HAS_PSYCOPG2 and module.params['action'] == 'backup':
        module.fail_json(msg=missing_required_lib(_pg.PSYCOPG2_REQUIREMENT), exception=_pg.PSYCOPG2_IMPORT_ERROR)
    if module.params['live'] and module.params['action'] != 'restore':
        module.fail_json(msg='live=true is for action=restore')
    # A list or a restore can read S3 alone; a backup creates backup_dir.
    without_root = ('backup', 'ship_wal') + (('list', 'restore') if module.params['s3'] else ())
    _backupmod.run(module, ACTIONS, (_pg.PgConnectionError,), 'backup_dir and wal_archive_dir', without_root)


if __name__ == '__main__':
    main()
