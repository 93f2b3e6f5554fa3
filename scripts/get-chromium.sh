#!/usr/bin/env bash
# Make sure headless Chromium is available for the HTML report's browser test: found on PATH, else
# installed from Debian (chromium, chromium-driver) when we are root. Never fails the set-up: without
# Chromium the browser test skips with a one-line reason.
set -uo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing headless Chromium from Debian (chromium, chromium-driver) for the HTML report test" >&2
  if ! { apt-get update -qq >/dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
           >/dev/null 2>&1; }; then
    echo "could not install Chromium with apt-get; the HTML report's browser test will be skipped" >&2
  fi
else
  echo "Chromium is missing (as root: apt-get install chromium chromium-driver); the HTML report's browser test will be skipped" >&2
fi
exit 0
