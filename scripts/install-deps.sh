#!/usr/bin/env bash
# Installs what building and testing sidekey needs on Debian 12, only where missing.
# Called by `make`; safe to run again. Needs root (or sudo) when something is missing.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache
  libboost1.81-all-dev libssl-dev libyaml-cpp-dev nlohmann-json3-dev
  openssl curl ca-certificates procps strace systemd
  python3 python3-requests python3-httpx python3-cryptography python3-yaml python3-jsonschema
  nodejs npm
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node and npm may come from elsewhere than Debian (a developer's machine); accept any node >= 20.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
