#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with an unlocked gnome-keyring Secret
# Service whose keyrings live in a temp folder, so keyring tests never touch the user's
# own keyring. Usage: scripts/with-keyring.sh <command> [args...]
# Needs the packages in .ci/apt-packages.txt.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi
for tool in dbus-run-session gnome-keyring-daemon; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool not found; install the packages in .ci/apt-packages.txt" >&2
    exit 127
  fi
done

scratch=$(mktemp -d "${TMPDIR:-/tmp}/with-keyring.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
mkdir -m 700 "$scratch/data" "$scratch/home" "$scratch/runtime"

# The keyrings go to XDG_DATA_HOME; the daemon's control socket and connect-oidc's lock
# files go to XDG_RUNTIME_DIR. HOME is changed for the daemon only: the command may need
# the real one (npm's cache and config live there).
export XDG_DATA_HOME="$scratch/data" XDG_RUNTIME_DIR="$scratch/runtime" WITH_KEYRING_HOME="$scratch/home"
unset DISPLAY WAYLAND_DISPLAY # no unlock prompt can be shown; a locked keyring fails at once

status=0
dbus-run-session -- bash -c '
  # --unlock reads the password on stdin, creates the login keyring on first use and
  # returns once the daemon owns org.freedesktop.secrets.
  printf %s pw | HOME="$WITH_KEYRING_HOME" gnome-keyring-daemon --unlock --components=secrets >/dev/null
  "$@"
' with-keyring "$@" || status=$?
exit "$status"
