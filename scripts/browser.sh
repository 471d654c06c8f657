#!/usr/bin/env bash
# The browser tier's set-up (tests/test_ui_browser.py): Debian's chromium and its
# chromedriver. Installed with apt-get when they are missing and this runs as root on
# Debian; otherwise says why and leaves it to the tier, which then skips with a reason.
# Never fails the build: the other tiers do not need a browser.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "${OIBUS_NO_BROWSER_INSTALL:-}" = "1" ]; then
  echo "browser tier: chromium not installed (OIBUS_NO_BROWSER_INSTALL=1)"
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser tier: install Debian's chromium and chromium-driver to run it (needs root and apt-get)"
  exit 0
fi
echo "browser tier: installing Debian's chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/tmp/oibus-browser-install.log 2>&1; then
  apt-get update -qq >>/tmp/oibus-browser-install.log 2>&1
  apt-get install -y -qq --no-install-recommends chromium chromium-driver >>/tmp/oibus-browser-install.log 2>&1 \
    || echo "browser tier: apt-get could not install chromium (see /tmp/oibus-browser-install.log)"
fi
exit 0
