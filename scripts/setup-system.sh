#!/usr/bin/env bash
# System packages tfc's tests need on a machine without a GPU: Mesa's lavapipe (Vulkan on the CPU) for the native
# runtime; Chromium (WebGPU on SwiftShader, on the CPU) and Node.js for the JS runtime's tests. Installs only what
# is missing. Needs root (or sudo) for apt-get.
set -euo pipefail
packages=()
if ! (ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1 && ldconfig -p | grep -q libvulkan.so.1); then
    packages+=(mesa-vulkan-drivers libvulkan1)
fi
command -v chromium >/dev/null || packages+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing ${packages[*]} with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
