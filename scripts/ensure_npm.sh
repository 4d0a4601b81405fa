#!/usr/bin/env bash
# `dissam weights isnet` fetches the published IS-Net with npm (Debian's npm package), as the browser test
# uses Debian's Chromium. Never fails: without npm the weights step says so and is skipped.
set -uo pipefail
if command -v npm >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null) \
    || echo "note: apt-get could not install npm; the published IS-Net weights will be skipped" >&2
else
  echo "note: npm is missing; the published IS-Net weights will be skipped (sudo apt-get install npm)" >&2
fi
exit 0
