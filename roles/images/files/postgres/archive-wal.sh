#!/bin/bash
# archive_command: copy one completed WAL segment into the WAL archive.
#   psscript-archive-wal %p %f [ARCHIVE_DIR]
# Never overwrites an existing segment with different content (a second
# cluster archiving into the same place must fail, not corrupt it); succeeds
# when the same content is already there (a retried archive after a crash).
# Bounded in time so a stuck archive fails fast instead of hanging pg_wal.
set -euo pipefail
src="$1" name="$2" archive="${3:-/var/lib/postgresql/wal-archive}"
dest="$archive/$name"

if [ -e "$dest" ]; then
  if cmp -s "$src" "$dest"; then
    exit 0
  fi
  echo "psscript-archive-wal: $dest exists with different content; refusing to overwrite" >&2
  exit 1
fi

tmp="$archive/.$name.tmp.$$"
trap 'rm -f "$tmp"' EXIT
timeout 60 cp "$src" "$tmp"
timeout 60 sync "$tmp"
mv "$tmp" "$dest"
timeout 60 sync "$archive"
trap - EXIT
