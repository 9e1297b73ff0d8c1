#!/usr/bin/env bash
# System packages tfc's native runtime needs on a machine without a GPU: Mesa's lavapipe (Vulkan on the CPU).
# Skipped when a Vulkan driver is already installed. Needs root (or sudo) for apt-get.
set -euo pipefail
if ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && ldconfig -p | grep -q libvulkan.so.1; then
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing Vulkan (Mesa lavapipe) with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
