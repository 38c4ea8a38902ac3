#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) psscript.infra developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: redis_snapshot
short_description: Take, verify, list, prune and restore Redis snapshots of a Sentinel-managed set
version_added: 0.2.0
description:
  - Keeps a catalog of Redis RDB snapshots in O(backup_dir), the same catalog as M(psscript.infra.pg_backup)
    (ids, SHA-256 per file, atomic publish with the C(catalog.json) marker last, retention). Everything goes over
    the network, so the module works from a backup container on another Docker host than Redis.
  - O(action=backup) chooses the node from what the Sentinel majority says, by default a replica that is in sync
    (the fork happens there, not on the master); the master only with O(source=master) or when no replica is in
    sync (with a warning). The node runs C(BGSAVE) (C(BGSAVE SCHEDULE) while an AOF rewrite runs) and the module
    waits for C(rdb_bgsave_in_progress:0), C(LASTSAVE) to advance and C(rdb_last_bgsave_status:ok). The RDB is then
    fetched with C(redis-cli --rdb), checked with C(redis-check-rdb), compressed with zstd and published. The key
    counts (total, with a TTL, and per database) go into the catalog entry. The backup is refused when the free space
    is below the expected size (the last snapshot, or twice C(used_memory)); a failed backup leaves nothing behind.
  - O(action=verify) re-hashes the files, unpacks the RDB into a scratch directory and runs C(redis-check-rdb) on it.
    The result is recorded in the catalog; a failure fails the task.
  - O(action=list) returns the catalog, ordered by the recorded stop time. O(action=prune) applies O(keep_days) and
    O(keep_count) with the same rules as M(psscript.infra.pg_backup) (the newest verified snapshot is always kept).
  - O(action=restore) loads a snapshot (O(backup_id)) or an RDB file (O(rdb_file)) into the live set without a
    shared volume. First (with O(pre_restore_snapshot)) it takes an ordinary snapshot of the current data into the
    same catalog, marked C(reason=pre-restore), under the same lock (also when the set is empty, so the undo always
    exists); RV(undo) says how to restore it. Every replica gets C(replica-priority 0) (Sentinel cannot promote one)
    and the module waits until the Sentinels see it. One in-sync replica (RV(detached_replica)) is detached - its
    C(masterauth) is set to a random wrong value and its master link killed, so it stays a replica of the right
    master (Sentinel leaves it alone) with the data from before the restore. A temporary C(redis-server) started in
    this container on O(restore_listen_host) loads the RDB (AOF off); the master replicates from it (C(REPLICAOF))
    until its key counts equal the snapshot's, then is promoted back (C(REPLICAOF NO ONE)); its AOF is rewritten
    (or, without AOF, an RDB saved); the other replicas must resync to the same key counts. Then the restored data
    is accepted - the detached replica gets its C(masterauth) back and must resync too; priorities are restored; and
    the Sentinel majority must still name the same master with no problem (the check of
    M(psscript.infra.sentinel_failover_check)).
  - Before each change a restore records in C(<backup_dir>/.restore-state.json) (mode 0600, written atomically)
    what to undo - the original replica priorities, the detached replica (its original C(masterauth) is
    O(redis_password); no password is written), the temporary server and whether the master replicates it. A run
    that is killed leaves the file; the next O(action=restore) or O(action=backup) undoes it first (priorities and
    C(masterauth) back, C(REPLICAOF NO ONE) on the master if it still replicates the temporary server, the
    temporary server stopped) and reports RV(recovered_from_interrupted_restore).
  - With O(s3), O(action=backup) verifies the new snapshot, then copies it to S3 and checks the copy end to end;
    O(action=list) also lists the S3 copies, O(action=verify) also checks them, O(action=prune) applies the same
    rules to them, and O(action=restore) downloads the snapshot (verified against its catalog) when the local copy
    is gone.
  - The master reports C(role:slave) only for the sync, which must end well before Sentinel would flag it down
    (C(down-after-milliseconds) + 20 s, less 5 s). On any error the master is promoted back and the priorities
    restored, so the set never stays without a master. If the master's data had already changed, the detached
    replica stays detached (and at C(replica-priority 0)) with the data from before the restore, and the error
    names it; the next run re-attaches it. Before that point it is re-attached at once.
  - With a single replica, that replica is the one detached; until it is back the master has no replica, and with
    C(min-replicas-to-write) (the stack's default is 1) it refuses writes (C(NOREPLICAS)) until the end of the
    restore. It is read-only during the sync anyway.
author:
  - psscript.infra developers (!UNKNOWN)
extends_documentation_fragment:
  - psscript.infra.sentinel
  - psscript.infra.sentinel.tls
  - psscript.infra.backup
  - psscript.infra.s3
  - psscript.infra.attributes
attributes:
  check_mode:
    support: full
    details:
      - O(action=backup) in check mode asks the Sentinels, chooses the node and checks the free space, and reports
        what it would take.
      - O(action=verify) in check mode checks but does not record the result (it still unpacks into a scratch
        directory, removed afterwards).
      - O(action=prune) in check mode returns what it would remove.
      - O(action=restore) in check mode checks the snapshot and the set and returns the plan, changing nothing (no
        pre-restore snapshot; an interrupted restore is only reported, as a warning).
  diff_mode:
    support: none
options:
  action:
    description:
      - V(backup) takes a snapshot, V(verify) checks snapshots, V(list) reads the catalog, V(prune) applies
        retention, V(restore) loads a snapshot into the live set.
      - V(sign) signs with the catalog key (O(catalog_key_file)) every catalog entry written before the key existed,
        in O(backup_dir) and, with O(s3), in the bucket; an entry whose C(hmac) does not match is not signed.
    type: str
    required: true
    choices: [backup, verify, list, prune, restore, sign]
  sentinels:
    description:
      - Every Sentinel that monitors the master, as C(host:port). Required for O(action=backup) and
        O(action=restore).
    type: list
    elements: str
    required: false
  source:
    description:
      - Node O(action=backup) snapshots. V(replica) is the in-sync replica with the highest replication offset
        (the master when none is in sync, with a warning); V(master) is the master.
    type: str
    choices: [replica, master]
    default: replica
  bgsave_timeout:
    description:
      - Seconds to wait for the C(BGSAVE) on the source node.
    type: int
    default: 300
  fetch_timeout:
    description:
      - Seconds C(redis-cli --rdb) may take to fetch the RDB.
    type: int
    default: 600
  backup_id:
    description:
      - Snapshot O(action=verify) checks (an id, V(latest) or V(all)), or O(action=restore) restores (an id or
        V(latest), the newest one that did not fail verification).
    type: str
    default: latest
  rdb_file:
    description:
      - For O(action=restore), an RDB file on the host that runs the module to load instead of a catalog snapshot
        (an import). It is checked with C(redis-check-rdb) first.
    type: path
  restore_listen_host:
    description:
      - Address of this host (the backup container) on the stack network, which the master connects to during a
        restore. The temporary server listens on it only. Required for O(action=restore).
    type: str
  restore_listen_port:
    description:
      - Port of the temporary restore server.
    type: int
    default: 16379
  restore_tls_cert:
    description:
      - With O(tls), the certificate (signed by the CA of O(ca_cert)) the temporary restore server serves TLS with,
        on O(restore_listen_port) only. The master checks it when it replicates from the temporary server (its
        C(tls-replication) is on). Required for O(action=restore) with O(tls).
    type: path
  restore_tls_key:
    description:
      - The private key of O(restore_tls_cert), readable by the user that runs the module.
    type: path
  restore_timeout:
    description:
      - Seconds each restore step may take (loading, AOF rewrite, each replica's resync, the final Sentinel check).
    type: int
    default: 300
  pre_restore_snapshot:
    description:
      - For O(action=restore), take a snapshot of the current data first (like O(action=backup), O(source) applies),
        recorded with C(reason=pre-restore) and a C(label). Restoring its id undoes the restore. V(latest) never
        selects a pre-restore snapshot.
    type: bool
    default: true
  replication_user:
    description:
      - For O(action=restore) (and undoing an interrupted one), the ACL user the data nodes replicate as (their
        C(masteruser)). The temporary restore server gets this user, so the master can replicate from it; the
        master's C(masteruser) must be this user.
      - Unset, the data nodes have no C(masteruser) (they authenticate as the C(default) user).
    type: str
  replication_password:
    description:
      - The password the data nodes replicate with (their C(masterauth), the password of O(replication_user)). The
        detached replica gets it back.
      - Default O(redis_password) (one password for everything, no ACL users).
    type: str
  restore_sync_timeout:
    description:
      - Upper bound in seconds of the master's sync from the temporary server. It is also capped below the time
        Sentinel takes to flag a master that reports C(role:slave) as down.
    type: float
notes:
  - Needs C(redis-cli), C(redis-check-rdb), C(redis-server) (restore) and C(zstd) of the same Redis version as the
    servers; the C(psscript/backup) image has them.
  - "ACL: for O(action=backup), O(redis_user) needs C(+ping +info +time +lastsave +bgsave) and, for C(redis-cli --rdb),
    C(+sync +psync +replconf); no key access. O(action=restore) also needs C(+config|get +config|set +client|kill
    +replicaof +slaveof +bgrewriteaof). Undoing an interrupted restore needs what O(action=restore) needs, so a backup
    that finds one fails with C(NOPERM) until a restore run (or a user that may) undoes it."
  - The temporary restore server gets O(redis_user) and O(replication_user) with their passwords as SHA-256 hashes.
  - The Redis password reaches C(redis-cli) on its standard input (C(--askpass)) and the temporary server through a
    0600 file in its scratch directory, never a command line or a process environment.
  - Entries are catalog type C(full) (a snapshot stands alone) with C(service=redis).
  - Jobs that write into O(backup_dir) hold an exclusive lock on C(<backup_dir>/.lock); a second one fails at once.
seealso:
  - module: psscript.infra.sentinel_failover_check
  - module: psscript.infra.pg_backup
  - name: Redis persistence
    description: RDB, AOF and how BGSAVE works.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/persistence/
'''

EXAMPLES = r'''
- name: Snapshot from a replica and verify it
  psscript.infra.redis_snapshot:
    action: backup
    backup_dir: /backups/redis
    sentinels: [172.25.0.41:26379, 172.25.0.42:26380, 172.25.0.43:26381]
    sentinel_password: "{{ redis_sentinel_password }}"
    redis_user: backup
    redis_password: "{{ redis_backup_password }}"
  register: snap

- name: Verify it
  psscript.infra.redis_snapshot:
    action: verify
    backup_id: "{{ snap.backup_id }}"
    backup_dir: /backups/redis

- name: Keep 14 days, at least 6 snapshots
  psscript.infra.redis_snapshot:
    action: prune
    keep_days: 14
    keep_count: 6
    backup_dir: /backups/redis

- name: Restore the newest snapshot into the live set (from the backup container at 172.25.0.50)
  psscript.infra.redis_snapshot:
    action: restore
    backup_id: latest
    backup_dir: /backups/redis
    sentinels: [172.25.0.41:26379, 172.25.0.42:26380, 172.25.0.43:26381]
    restore_listen_host: 172.25.0.50
    replication_user: replica
    replication_password: "{{ redis_replica_password }}"
  environment:
    REDIS_USERNAME: restore
    REDIS_PASSWORD: "{{ redis_restore_password }}"
    REDIS_SENTINEL_PASSWORD: "{{ redis_sentinel_password }}"
'''

RETURN = r'''
backup_id:
  description: Id of the snapshot taken, or restored.
  returned: action is backup or restore (of a catalog snapshot)
  type: str
  sample: 20250131T020000Z-full
backup:
  description:
    - Catalog entry of the snapshot taken, without per-file hashes (named C(entry) before 0.3.0).
    - Besides the snapshot's own fields below, it has the fields every catalog entry has, documented once in
      RV(psscript.infra.pg_backup#module:backup) (C(id), C(type), C(parent), C(started_at), C(stopped_at), C(bytes),
      C(file_count), C(verified), C(verified_at), C(verify_error), C(s3)).
  returned: action is backup, not in check mode
  type: dict
  sample:
    id: 20250131T020000Z-full
    type: full
    service: redis
    source: {address: '172.25.0.32:6380', role: replica}
    redis_version: 8.0.2
    rdb_version: 12
    keys: 1200
    expires: 10
    keys_by_db: {'0': 1000, '3': 200}
    rdb_bytes: 52000
    bytes: 21000
    durations: {bgsave: 0.5, fetch: 5.1, check: 0.1, compress: 0.1, total: 5.9}
  contains: &catalog_entry
    service:
      description: V(redis).
      returned: always
      type: str
    source:
      description: The node the snapshot was taken from, C(address) and C(role).
      returned: always
      type: dict
    redis_version:
      description: Version of the Redis server that wrote the RDB.
      returned: always
      type: str
    rdb_version:
      description: RDB format version of the file.
      returned: always
      type: int
    keys:
      description: Keys in the snapshot, as redis-check-rdb counted them.
      returned: always
      type: int
    expires:
      description: Keys with an expiry.
      returned: always
      type: int
    keys_by_db:
      description: Keys per database number (from the RDB's RESIZEDB records).
      returned: always
      type: dict
    rdb_bytes:
      description: Size of the plain RDB.
      returned: always
      type: int
    reason:
      description: V(pre-restore) for the snapshot a restore took of the data it replaced; absent otherwise.
      returned: for pre-restore snapshots
      type: str
    durations:
      description: Seconds per step (C(bgsave), C(fetch), C(check), C(compress), C(total)).
      returned: always
      type: dict
source:
  description: The node chosen for O(action=backup), its role, and the replicas skipped with why.
  returned: action is backup
  type: dict
  sample: {address: '172.25.0.32:6380', role: replica, skipped: {}}
  contains:
    address:
      description: C(host:port) of the node.
      returned: always
      type: str
    role:
      description: V(replica) or V(master).
      returned: always
      type: str
    skipped:
      description: Replicas not chosen, with why, by address.
      returned: always
      type: dict
expected_bytes:
  description: Space the snapshot was expected to need when free space was checked.
  returned: action is backup
  type: int
  sample: 1048576
backups:
  description:
    - Published snapshots, oldest first by stop time, without per-file hashes.
    - Each is a catalog entry (as RV(backup)) with C(restorable) and, with O(s3), C(in_s3), as RV(psscript.infra.pg_backup#module:backups)
      describes them.
  returned: action is list
  type: list
  elements: dict
  sample: [{id: 20250131T020000Z-full, keys: 1200, verified: true, restorable: true}]
  contains: *catalog_entry

latest:
  description: Id of the newest snapshot that did not fail verification and is not a pre-restore snapshot, or null
    (what a restore of V(latest) takes).
  returned: action is list
  type: str
  sample: 20250131T020000Z-full
last_verified_full:
  description: Id of the newest snapshot that passed verification, or null (a snapshot is always a full backup;
    named C(last_verified) before 0.3.0).
  returned: action is list
  type: str
  sample: 20250131T020000Z-full
latest_age_seconds:
  description: Seconds since the snapshot RV(latest) ended, or null when there is none.
  returned: action is list
  type: int
  sample: 3600
last_verified_full_age_seconds:
  description: Seconds since the snapshot RV(last_verified_full) ended, or null when there is none.
  returned: action is list
  type: int
  sample: 86400
free_bytes:
  description: Free bytes of the file system of O(backup_dir) (before the snapshot, for O(action=backup)), as
    RV(psscript.infra.pg_backup#module:free_bytes) reports them.
  returned: action is backup or list
  type: int
total_bytes:
  description: Its size in bytes, as RV(psscript.infra.pg_backup#module:total_bytes).
  returned: action is list
  type: int
free_percent:
  description: Its free share in percent, as RV(psscript.infra.pg_backup#module:free_percent).
  returned: action is list
  type: float
leftovers:
  description: Directories of interrupted work (never listed as snapshots), each with C(path), C(name) and
    C(age_seconds), as RV(psscript.infra.pg_backup#module:leftovers) describes them.
  returned: action is list or prune
  type: list
  elements: dict
  sample: []
unreadable:
  description: Snapshot directories whose C(catalog.json) could not be read, each with C(path), C(id), C(error),
    C(parent) and C(wal_start), as RV(psscript.infra.pg_backup#module:unreadable) describes them.
  returned: action is list or prune
  type: list
  elements: dict
  sample: []
signed:
  description: The snapshots O(action=sign) signed, as RV(psscript.infra.pg_backup#module:signed) describes them.
  returned: action is sign
  type: list
  elements: str
s3_signed:
  description: Their copies in S3 it signed, as RV(psscript.infra.pg_backup#module:s3_signed) describes them.
  returned: action is sign
  type: list
  elements: str
refused:
  description: What it left refused, as RV(psscript.infra.pg_backup#module:refused) describes it.
  returned: action is sign
  type: list
  elements: dict
results:
  description: One result per snapshot O(action=verify) checked, with the keys RV(psscript.infra.pg_backup#module:results) describes
    (C(id), C(ok), C(checks), C(problems), C(local), C(s3)).
  returned: action is verify
  type: list
  elements: dict
  sample: [{id: 20250131T020000Z-full, ok: true, checks: [sha256, redis-check-rdb], problems: [], keys: 1200}]
removed:
  description: Ids O(action=prune) removed (or would remove, in check mode), oldest first.
  returned: action is prune
  type: list
  elements: str
  sample: [20241201T020000Z-full]
kept:
  description: Ids retention keeps, oldest first.
  returned: action is prune
  type: list
  elements: str
  sample: [20250131T020000Z-full]
reasons:
  description: For each kept snapshot, the rules that keep it.
  returned: action is prune
  type: dict
  sample: {20250131T020000Z-full: [newest verified full backup]}
removed_leftovers:
  description: Leftover directories removed by O(action=prune), with the keys of RV(leftovers).
  returned: action is prune
  type: list
  elements: dict
  sample: []
master:
  description: The master the Sentinel majority names, restored into.
  returned: action is restore
  type: str
  sample: 172.25.0.31:6379
replicas:
  description: The replicas that were resynced.
  returned: action is restore
  type: list
  elements: str
  sample: [172.25.0.32:6380, 172.25.0.33:6381]
plan:
  description: The restore steps, in words (what check mode would do).
  returned: action is restore
  type: list
  elements: str
  sample: [take a pre-restore snapshot of the current data ..., set replica-priority 0 on 172.25.0.32:6380 ...]
restored_keys:
  description: Keys per database the master holds after the restore.
  returned: action is restore, not in check mode
  type: dict
  sample: {'0': 1000, '3': 200}
log:
  description: What the restore did, step by step.
  returned: action is restore, not in check mode
  type: list
  elements: str
  sample: ['REPLICAOF 172.25.0.50:16379 on 172.25.0.31:6379']
downloaded_from_s3:
  description: Ids of the snapshots O(action=restore) downloaded from S3 (or would, in check mode) because they were
    not in O(backup_dir); empty when the snapshot was local (a bool before 0.3.0).
  returned: action is restore of a catalog snapshot
  type: list
  elements: str
  sample: []
s3:
  description:
    - O(action=backup) with O(s3) - the upload (C(id), C(url), C(objects), C(bytes), C(sse), C(upload_seconds),
      C(verify_seconds), C(uploaded_at), C(verified_at)).
    - O(action=prune) with O(s3) - what retention removed in S3 (C(removed), C(kept), C(reasons), C(incomplete)).
    - The keys are those RV(psscript.infra.pg_backup#module:s3) describes, without its WAL keys.
  returned: action is backup or prune, O(s3) given, not in check mode for backup
  type: dict
  sample:
    id: 20250131T020000Z-full
    url: s3://backups/prod/redis/20250131T020000Z-full/
    objects: 2
    bytes: 21000
    verified_at: '2025-01-31T02:00:09.000000Z'

s3_backups:
  description:
    - The snapshots in S3 (with C(catalog.json) uploaded), oldest first; local entries in RV(backups) then carry
      C(in_s3).
    - Each is a catalog entry (as RV(backup)) with C(restorable) and C(local), as RV(psscript.infra.pg_backup#module:s3_backups) describes them.
  returned: action is list, O(s3) given
  type: list
  elements: dict
  sample: [{id: 20250131T020000Z-full, local: true, restorable: true}]
  contains: *catalog_entry

s3_latest:
  description: Id of the newest restorable snapshot in S3, or null.
  returned: action is list, O(s3) given
  type: str
  sample: 20250131T020000Z-full
s3_incomplete:
  description: Ids in S3 without C(catalog.json) (interrupted uploads); never restored.
  returned: action is list, O(s3) given
  type: list
  elements: str
  sample: []
s3_unreadable:
  description: Snapshots in S3 whose C(catalog.json) could not be read, with the keys of RV(unreadable).
  returned: action is list, O(s3) given
  type: list
  elements: dict
  sample: []
pre_restore_snapshot:
  description: Id of the snapshot of the data as it was before the restore (C(reason=pre-restore) in the catalog).
  returned: action is restore, O(pre_restore_snapshot), not in check mode
  type: str
  sample: 20250131T040500Z-full
undo:
  description: The command that restores the pre-restore snapshot, which undoes this restore.
  returned: action is restore, O(pre_restore_snapshot), not in check mode
  type: str
  sample: restore.yml -e service=redis -e backup_id=20250131T040500Z-full -e confirm=yes
detached_replica:
  description:
    - The replica kept detached with the data from before the restore until the restored data was accepted, or null
      when none could be (no replica in sync with C(masterauth) = O(redis_password)). In check mode only C(address).
    - C(keys_before) - its keys when it was detached; C(keys_at_accept), C(link_at_accept), C(role_at_accept) - what it
      held and reported when the restored data was accepted, before it was re-attached.
    - When the restore failed, C(address) and C(held) - whether it stays detached with the data from before the
      restore (the master's data had changed) or was re-attached.
  returned: action is restore
  type: dict
  sample: {address: '172.25.0.33:6381', keys_before: {'0': 1000}, keys_at_accept: {'0': 1000}, link_at_accept: down,
           role_at_accept: slave}
  contains:
    address:
      description: C(host:port) of the replica.
      returned: always
      type: str
    held:
      description: On failure, whether it stays detached with the data from before the restore.
      returned: the restore failed
      type: bool
    keys_before:
      description: Its keys per database when it was detached.
      returned: success
      type: dict
    keys_at_accept:
      description: Its keys per database when the restored data was accepted.
      returned: success
      type: dict
    link_at_accept:
      description: Its C(master_link_status) then.
      returned: success
      type: str
    role_at_accept:
      description: Its C(role) then.
      returned: success
      type: str
recovered_from_interrupted_restore:
  description: What this run undid of an interrupted (killed) restore found in C(<backup_dir>/.restore-state.json)
    (C(started_at), C(pid), C(backup), C(held) - the replica it had kept detached after a failure - and C(steps)).
  returned: action is backup or restore, an interrupted restore was found, not in check mode
  type: dict
  sample: {started_at: '2025-01-31T04:05:00.000000Z', pid: 412, backup: 20250131T020000Z-full, held: false,
           steps: ['replica-priority 100 restored on 172.25.0.32:6380'], problems: []}
  contains:
    started_at:
      description: When the interrupted restore started.
      returned: always
      type: str
    pid:
      description: Process id of the interrupted run.
      returned: always
      type: int
    backup:
      description: The snapshot it was restoring.
      returned: always
      type: str
    held:
      description: Whether it had kept a replica detached after a failure.
      returned: always
      type: bool
    steps:
      description: What this run undid.
      returned: always
      type: list
      elements: str
    problems:
      description: What could not be undone.
      returned: always
      type: list
      elements: str
sentinel:
  description: The Sentinel check after the restore (as M(psscript.infra.sentinel_failover_check) reports it).
  returned: action is restore, not in check mode
  type: dict
  sample: {master: {host: 172.25.0.31, port: 6379}, quorum_ok: true, problems: []}
  contains:
    master:
      description: The master the Sentinels agree on (C(host), C(port)).
      returned: always
      type: dict
    quorum_ok:
      description: Whether C(SENTINEL CKQUORUM) passed.
      returned: always
      type: bool
    problems:
      description: What the check found wrong.
      returned: always
      type: list
      elements: str
    epoch:
      description: The Sentinels' config epoch of the master.
      returned: always
      type: int
listen:
  description: C(host:port) of the temporary server the master replicates the snapshot from.
  returned: action is restore
  type: str
  sample: '172.25.0.50:16379'
role_switch_budget_seconds:
  description: Seconds the master may report C(role:slave) before a Sentinel would flag it down; the sync must end
    within them.
  returned: action is restore
  type: float
  sample: 20.0
expected_keys:
  description: Keys per database the snapshot holds (from its catalog), or null when it does not record them.
  returned: action is restore
  type: dict
  sample: {'0': 1000, '3': 200}
rdb_file:
  description: The RDB file restored (O(rdb_file)).
  returned: action is restore with O(rdb_file)
  type: str
  sample: /backups/redis/import/dump.rdb
'''

import functools
import os
import re
import shutil

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.psscript.infra.plugins.module_utils import (_backupmod, _catalog, _redis, _redisrestore,
                                                                     _redissnap, _s3)
from ansible_collections.psscript.infra.plugins.module_utils._catalog import BackupError
from ansible_collections.psscript.infra.plugins.module_utils._diskspace import human_bytes


def find_tools(module, names):
    return _backupmod.find_tools(module, names, '%(name)s was not found: install redis-tools/redis-server/zstd of the '
                                 'servers\' Redis version, or run the module in the psscript/backup image')


def sentinel_set(module):
    params = module.params
    if not params['sentinels']:
        module.fail_json(msg='action=%s needs sentinels (every Sentinel as host:port)' % params['action'])
    return _redis.SentinelSet(params['sentinels'], params['master_name'], params['sentinel_password'],
                              params['redis_password'], params['socket_timeout'], params['redis_user'],
                              tls=_redis.tls_from_params(params))


def temp_server_tls(module):
    """The temporary server's TLS: with the data nodes' (tls), it serves O(restore_tls_cert) and O(restore_tls_key)."""
    params = module.params
    if not _redis.tls_from_params(params):
        return None
    if not (params['restore_tls_cert'] and params['restore_tls_key'] and params['ca_cert']):
        module.fail_json(msg='action=restore with tls needs restore_tls_cert, restore_tls_key and ca_cert: the master '
                             'replicates from the temporary server over TLS and checks its certificate with the stack CA')
    return dict(cert=params['restore_tls_cert'], key=params['restore_tls_key'], ca_cert=params['ca_cert'])


def temp_node(module):
    """The factory of the temporary restore server's connections: as O(redis_user), like the data nodes."""
    return functools.partial(_redis.Node, username=module.params['redis_user'], tls=_redis.tls_from_params(module.params))


def replication(module):
    """(masteruser, masterauth) of the data nodes."""
    params = module.params
    password = params['redis_password'] if params['replication_password'] is None else params['replication_password']
    return params['replication_user'], password


def s3_store(module):
    return _backupmod.s3_store(module, 'redis')


def recover_interrupted_restore(module, root, sset, result):
    """Undo what a killed restore left (replica-priority 0, a detached replica, the master replicating a
    temporary server) before anything else; in check mode only say it would."""
    if not os.path.isfile(_redissnap.restore_state_path(root)):
        return
    if module.check_mode:
        state = _redissnap.read_restore_state(root)
        module.warn('A restore started %s was interrupted: the next run undoes %s'
                    % (state.get('started_at'), '; '.join('%s on %s' % step[:2] for step in
                                                          _redissnap.recovery_plan(state, None)) or 'nothing'))
        return
    outcome = _redissnap.recover_interrupted(root, sset, temp_node(module), module.params['redis_password'],
                                             result.setdefault('log', []).append,
                                             replication_password=replication(module)[1])
    if outcome is not None:
        result.update(changed=True, recovered_from_interrupted_restore=outcome)


def snapshot_source(module, sset, root, entries, result):
    """The node a snapshot is taken from (see choose_source), checked for free space: ``(source, node,
    needed bytes, why)``; ``result`` gets source, expected_bytes and free_bytes."""
    views = sset.views()
    master = _redissnap.agreed_view_master(views)
    candidates = _redissnap.replica_addresses(views, master)
    replications = dict((address, sset.replication(address)[0]) for address in candidates)
    source = _redissnap.choose_source(master, candidates, replications, module.params['source'])
    if source['warning']:
        module.warn(source['warning'])
    node = sset.data_node(source['address'])
    memory = node.call('info', 'memory', command='INFO memory')
    needed, why = _redissnap.expected_size(entries, memory.get('used_memory'))
    result.update(source=dict(address=source['address'], role=source['role'], skipped=source['skipped']),
                  expected_bytes=needed)
    result['free_bytes'] = _backupmod.check_space(root, needed, why)
    return source, node, needed, why


def do_backup(module, root):
    params = module.params
    result = dict(changed=False)
    tools = find_tools(module, _redissnap.TOOLS + ('timeout',))
    lock = _backupmod.open_root(module, root, result)
    sset = sentinel_set(module)
    store = s3_store(module)
    try:
        if store is not None:
            store.check_bucket()
        recover_interrupted_restore(module, root, sset, result)
        source, node, needed, why = snapshot_source(module, sset, root, _backupmod.entries(root), result)
        if module.check_mode:
            result.update(changed=True, backup_id=_catalog.new_backup_id(_redissnap.CATALOG_TYPE),
                          msg='Would snapshot %s (%s) into %s (expected size %s: %s)'
                          % (source['address'], source['role'], root, human_bytes(needed), why))
            return result

        entry = _redissnap.take_snapshot(module.run_command, tools, node, source, root,
                                         lambda: _redissnap.server_time(node),
                                         params['bgsave_timeout'], params['fetch_timeout'], params['redis_password'])
        _backupmod.took(result, entry, 'Took Redis snapshot %s from %s (%s): %s keys, %s'
                        % (entry['id'], source['address'], source['role'], entry['keys'], human_bytes(entry['bytes'])))
        if store is not None:
            outcome = _redissnap.verify_snapshot(module.run_command, find_tools(module, ('redis-check-rdb', 'zstd')),
                                                 root, entry)
            _backupmod.copy_to_s3(result, store, root, entry, outcome, 'snapshot')
        return result
    finally:
        sset.close()
        if lock is not None:
            lock.release()


def do_list(module, root):
    return _backupmod.listing(root, s3_store(module), _redissnap.listing, _catalog.utc_now())


def do_verify(module, root):
    tools = find_tools(module, ('redis-check-rdb', 'zstd'))
    return _backupmod.verify(module, root, s3_store(module),
                             lambda entry, entries: _redissnap.verify_snapshot(module.run_command, tools, root, entry),
                             'snapshot', 'take a new snapshot', remote_marks_local=True)


def do_prune(module, root):
    return _backupmod.prune(module, root, s3_store(module), 'snapshot')


def do_restore(module, root):
    params = module.params
    if not params['restore_listen_host']:
        module.fail_json(msg='action=restore needs restore_listen_host: the address of this container on the stack '
                             'network, which the master connects to')
    if params['backup_id'] == 'all':
        module.fail_json(msg='backup_id=all is for action=verify; restore takes one snapshot id or latest')
    temp_tls = temp_server_tls(module)
    tools = find_tools(module, _redissnap.RESTORE_TOOLS)
    rc, out, err = module.run_command([tools['redis-server'], '--version'])
    temp_version = (re.search(r'v=(\S+)', out or '') or re.search(r'(\d+\.\d+\.\d+)', out or '')).group(1)
    log = []
    result = dict(changed=False, log=log)
    lock = None
    if not module.check_mode:
        lock = _catalog.RootLock(root).acquire()
    sset = sentinel_set(module)
    scratch = _redissnap.scratch_dir(root, 'restore')
    try:
        recover_interrupted_restore(module, root, sset, result)
        if params['rdb_file']:
            if not os.path.isfile(params['rdb_file']):
                module.fail_json(msg='rdb_file %s does not exist on this host' % params['rdb_file'])
            facts = _redissnap.check_rdb(module.run_command, tools['redis-check-rdb'], params['rdb_file'])
            snapshot = dict(name=params['rdb_file'], keys=facts['keys'], expires=facts['expires'],
                            keys_by_db=_redissnap.plain_counts(facts['keys_by_db']) if facts['keys_by_db'] is not None else None)
            rdb_path = params['rdb_file']
            result['rdb_file'] = rdb_path
        else:
            store = s3_store(module)
            entry, download = _redissnap.choose_for_restore(_catalog.list_backups(root)['backups'],
                                                            store.list_entries() if store is not None else None,
                                                            params['backup_id'])
            result['downloaded_from_s3'] = [entry['id']] if download else []
            if download and not module.check_mode:
                entry = store.download(root, entry['id'])
                log.append('downloaded %s from %s' % (entry['id'], store.url(store.key(entry['id']))))
            if download and module.check_mode:
                rdb_path, problems = None, []  # it would be downloaded, verified against its catalog, then checked
            else:
                rdb_path, facts, problems = _redissnap.unpack_checked(module.run_command, tools, root, entry, scratch)
            if problems:
                module.fail_json(msg='Snapshot %s fails its checks, nothing was changed: %s' % (entry['id'], '; '.join(problems[:5])),
                                 backup_id=entry['id'])
            snapshot = dict(name=entry['id'], keys=entry.get('keys'), expires=entry.get('expires'),
                            keys_by_db=entry.get('keys_by_db'))
            result['backup_id'] = entry['id']
        restore = _redisrestore.Restore(module.run_command, tools, sset, temp_node(module), params['restore_listen_host'],
                                        params['restore_listen_port'], params['redis_password'], log.append,
                                        sync_timeout=params['restore_sync_timeout'], timeout=params['restore_timeout'],
                                        root=root, username=params['redis_user'], replication=replication(module),
                                        tls=temp_tls)

        def pre_snapshot():
            # An ordinary snapshot of the data about to be replaced, under this run's lock.
            entries = _catalog.list_backups(root)['backups']
            source, node, dummy, dummy = snapshot_source(module, sset, root, entries, {})
            return _redissnap.take_snapshot(module.run_command, tools, node, source, root,
                                            lambda: _redissnap.server_time(node), params['bgsave_timeout'],
                                            params['fetch_timeout'], params['redis_password'],
                                            extra=dict(reason=_redissnap.PRE_RESTORE,
                                                       label='before restoring %s' % snapshot['name']))
        try:
            outcome = _redisrestore.run_restore(restore, rdb_path, snapshot, scratch, temp_version, module.check_mode,
                                                pre_snapshot=pre_snapshot if params['pre_restore_snapshot'] else None)
        except BackupError as err:
            result['changed'] = not module.check_mode and bool(log)
            if restore.detached_address:
                result['detached_replica'] = dict(address=restore.detached_address, held=bool(restore.state.get('held')))
            module.fail_json(msg='Restore failed: %s' % err.msg, **result)
        result.update(outcome)
        if outcome.get('pre_restore_snapshot'):
            result['undo'] = ('restore.yml -e service=redis -e backup_id=%s -e confirm=yes'
                              % outcome['pre_restore_snapshot'])
        if module.check_mode:
            result.update(changed=True, msg='Would restore %s into master %s: %s'
                          % (snapshot['name'], outcome['master'], '; '.join(outcome['plan'])))
            return result
        result['changed'] = True
        state, report = _redisrestore.sentinel_check(sset, outcome['master'], params['restore_timeout'],
                                                     expected_replicas=len(outcome['replicas']))
        if state != _redissnap.DONE:
            module.fail_json(msg='Restored %s into %s, but the Sentinel check fails: %s'
                             % (snapshot['name'], outcome['master'], report), **result)
        result['sentinel'] = dict((k, report[k]) for k in ('master', 'quorum_ok', 'problems', 'epoch'))
        result['msg'] = ('Restored %s into master %s and %d replica(s): %s'
                         % (snapshot['name'], outcome['master'], len(outcome['replicas']),
                            _redissnap.counts_text(outcome['restored_keys'])))
        if result.get('undo'):
            result['msg'] += '; to undo: %s' % result['undo']
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        sset.close()
        if lock is not None:
            lock.release()


ACTIONS = dict(backup=do_backup, list=do_list, verify=do_verify, restore=do_restore, prune=do_prune,
               sign=lambda module, root: _backupmod.sign(module, root, s3_store(module)))


def main():
    argument_spec = _redis.sentinel_connection_spec()
    argument_spec['sentinels']['required'] = False
    argument_spec.update(_catalog.catalog_spec())
    argument_spec.update(_s3.s3_argument_spec())
    argument_spec.update(
        action=dict(type='str', required=True, choices=['backup', 'verify', 'list', 'prune', 'restore', 'sign']),
        source=dict(type='str', default='replica', choices=['replica', 'master']),
        bgsave_timeout=dict(type='int', default=300),
        fetch_timeout=dict(type='int', default=600),
        backup_id=dict(type='str', default='latest'),
        rdb_file=dict(type='path'),
        restore_listen_host=dict(type='str'),
        restore_listen_port=dict(type='int', default=16379),
        restore_tls_cert=dict(type='path'),
        restore_tls_key=dict(type='path', no_log=False),
        restore_timeout=dict(type='int', default=300),
        restore_sync_timeout=dict(type='float'),
        replication_user=dict(type='str'),
        replication_password=dict(type='str', no_log=True),
        pre_restore_snapshot=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if module.params['action'] in ('backup', 'restore') and not _redis.HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis'), exception=_redis.REDIS_IMPORT_ERROR)
    _backupmod.run(module, ACTIONS, (_redis.RedisOpError,))


if __name__ == '__main__':
    main()
