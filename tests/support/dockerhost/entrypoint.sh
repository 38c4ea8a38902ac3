#!/bin/sh
# sshd (key login as root, the key given in AUTHORIZED_KEY) beside dockerd; the container lives as
# long as dockerd does.
set -e
# A host that was killed keeps its /run in the container layer: clear what a reboot would (stale pid
# files stop sshd, dockerd and containerd from starting).
rm -rf /var/run/docker.pid /var/run/docker /var/run/containerd /run/sshd.pid
mkdir -p /run/sshd
printf '%s\n' "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 0600 /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
/usr/sbin/sshd -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password
exec dockerd -H unix:///var/run/docker.sock -H tcp://0.0.0.0:2375 --tls=false "$@"
