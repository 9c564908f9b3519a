#!/usr/bin/env bash
# Proves the README's set-up on a fresh machine, for real: builds a minimal Debian 12 root
# with debootstrap, puts this machine's Rust toolchain in it (plus the C linker, git and make
# that a Rust toolchain on Debian comes with), clones this repository's committed HEAD into
# it and runs `make test` there, so every other package must come from the project's own
# install step. Needs root. Not run by CI (it takes a while); run it before claiming that a
# fresh machine works.
#
#   sudo scripts/fresh-root-test.sh            # root in /var/tmp/switchboard-fresh-root
#   FRESH_ROOT=/some/dir KEEP_ROOT=1 scripts/fresh-root-test.sh
#
# The root uses this machine's Debian mirror (from its apt sources) and its extra CA
# certificates (from /usr/local/share/ca-certificates), so it reaches the package registries
# the way this machine does. Prints each phase's time; exits with `make test`'s status.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
root="${FRESH_ROOT:-/var/tmp/switchboard-fresh-root}"
suite=bookworm

say() { printf '[fresh-root] %s\n' "$*"; }
die() { printf '[fresh-root] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"

mounted=()
cleanup() {
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  # Never delete through a mount that is still there (/dev is bound in).
  if grep -q " $root/" /proc/mounts; then
    say "left $root in place: something is still mounted under it"
  elif [ -z "${KEEP_ROOT:-}" ]; then
    rm -rf "$root"
  fi
}
trap cleanup EXIT

# The mirror this machine's apt uses (deb822 sources or the classic list).
mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1)"
[ -n "$mirror" ] || mirror="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -1)"
[ -n "$mirror" ] || die "cannot tell which Debian mirror this machine uses"

if ! command -v debootstrap >/dev/null; then
  say "apt-get install debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# Toolchain: the default rustup toolchain (what `cargo` runs here) and cargo's own binaries.
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
toolchain="$(rustup show active-toolchain | awk '{print $1}')"
[ -d "$rustup_home/toolchains/$toolchain" ] || die "no toolchain $toolchain under $rustup_home"

start=$(date +%s)
phase() { say "$1 ($(( $(date +%s) - start ))s so far)"; }

# A run killed outright leaves its bind mounts: never delete through them.
if grep -q " $root/" /proc/mounts; then
  die "something is still mounted under $root (an earlier run was killed?); unmount it first"
fi
rm -rf --one-file-system "$root"
mkdir -p "$root"
phase "debootstrap $suite (minbase) from this machine's mirror"
debootstrap --variant=minbase \
  --include=ca-certificates,gcc,g++,libc6-dev,make,git \
  "$suite" "$root" "$mirror" >/dev/null
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
EOF
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"
# What the Debian installer writes and debootstrap does not: without it `localhost` does
# not resolve, which no real machine is like.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
echo fresh-root > "$root/etc/hostname"

phase "copying the Rust toolchain ($toolchain)"
mkdir -p "$root/root/.rustup/toolchains" "$root/root/.cargo/bin"
cp -a "$rustup_home/toolchains/$toolchain" "$root/root/.rustup/toolchains/"
cp "$rustup_home/settings.toml" "$root/root/.rustup/"
cp -a "$cargo_home/bin/." "$root/root/.cargo/bin/"

phase "cloning the committed HEAD"
git clone -q "$repo" "$root/root/switchboard"
git -C "$root/root/switchboard" log --oneline -1

for m in proc sys dev dev/pts; do
  mkdir -p "$root/$m"
  case "$m" in
    proc) mount -t proc proc "$root/proc" ;;
    sys) mount -t sysfs sys "$root/sys" ;;
    *) mount --bind "/$m" "$root/$m" ;;
  esac
  mounted+=("$root/$m")
done
mkdir -p "$root/dev/shm"

phase "make test inside the fresh root"
set +e
# A clean environment: nothing of this machine's but the CA settings the registries need.
chroot "$root" /usr/bin/env -i \
  HOME=/root PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 CI=true TERM=dumb \
  /bin/bash -c 'cd /root/switchboard && make test' 2>&1 | tee "${FRESH_LOG:-/var/tmp/switchboard-fresh-root.log}"
status=${PIPESTATUS[0]}
set -e
phase "make test exited with $status"
exit "$status"
