#!/usr/bin/env bash
# Sets up key-based `ssh localhost` for the benchmark's ssh baseline.
# Run as the user who runs openclaw-bench; needs openssh-server installed
# (Debian: apt-get install openssh-server). Touches only ~/.ssh and starts
# sshd if it is not running. Not used by the test suite.
set -euo pipefail
command -v sshd >/dev/null || { echo "sshd not found: apt-get install openssh-server" >&2; exit 1; }
mkdir -p ~/.ssh && chmod 700 ~/.ssh
[ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f ~/.ssh/id_ed25519
touch ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys
grep -qxF "$(cat ~/.ssh/id_ed25519.pub)" ~/.ssh/authorized_keys || cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
if ! pgrep -x sshd >/dev/null; then
  mkdir -p /run/sshd
  "$(command -v sshd)"
fi
ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new localhost true && echo "ssh localhost works"
