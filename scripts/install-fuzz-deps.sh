#!/usr/bin/env bash
# Installs what the fuzz build (scripts/fuzz.sh) needs on Debian 12 beyond scripts/install-deps.sh:
# clang 14 and its compiler-rt runtimes (libFuzzer, ASan, UBSan). Only where missing; safe to run
# again. Needs root (or sudo) when something is missing. `make test` does not call this.
set -euo pipefail

APT_PACKAGES=(clang-14 libclang-rt-14-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-fuzz-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Update the package lists once, and only when apt does not know a package yet (a fresh
  # machine, or scripts/install-deps.sh has not just updated them).
  for p in "${missing[@]}"; do
    if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
      $SUDO apt-get update -qq
      break
    fi
  done
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
