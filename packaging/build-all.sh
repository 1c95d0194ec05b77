#!/usr/bin/env bash
# Every narun package, for amd64, arm64 and riscv64, from the repository:
#   bash packaging/build-all.sh [ARCH...]        (or: make packages)
# ARCH: amd64, arm64, riscv64 (default: all three).
#
# For each architecture: the release binary (`make build ARCH=...`: native
# in target/release for amd64, cross-compiled with Debian's toolchains in
# target/cross for arm64 and riscv64), then the .deb (dpkg-buildpackage -a
# ARCH, from debian/) and the .rpm (rpmbuild --target, from rpm/narun.spec);
# both install through `make install`. Then the package checks
# (packaging/test-packages.sh: contents, modes, lintian, rpmlint) unless
# NARUN_SKIP_PACKAGE_TESTS=1.
#
# Output in target/packages/: narun_<ver>_<arch>.deb,
# narun-<ver>-1.<rpmarch>.rpm, SIZES (binary and package sizes).
set -euo pipefail
cd "$(dirname "$0")/.."

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64 arm64 riscv64)
declare -A rpm_arch=([amd64]=x86_64 [arm64]=aarch64 [riscv64]=riscv64)
for a in "${archs[@]}"; do
  [ -n "${rpm_arch[$a]:-}" ] || { echo "build-all: unknown architecture $a (amd64, arm64, riscv64)" >&2; exit 2; }
done

if [ "${archs[*]}" = amd64 ]; then bash packaging/prereqs.sh --native; else bash packaging/prereqs.sh; fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
deb_version=$(dpkg-parsechangelog -S Version)
rpm_version=$(sed -n 's/^Version: *//p' rpm/narun.spec)
if [ "$version" != "$deb_version" ] || [ "$version" != "$rpm_version" ]; then
  echo "build-all: versions differ: Cargo.toml $version, debian/changelog $deb_version, rpm/narun.spec $rpm_version" >&2
  exit 1
fi

out="$PWD/target/packages"
mkdir -p "$out"
start=$SECONDS
declare -A took
for arch in "${archs[@]}"; do
  t=$SECONDS
  echo "== $arch: binary (make build ARCH=$arch)"
  make --no-print-directory build ARCH="$arch"

  echo "== $arch: .deb"
  rm -f "$out/narun_${version}_${arch}".{deb,buildinfo,changes}
  NARUN_DEB_DESTDIR="$out" dpkg-buildpackage -b -us -uc -d -a"$arch" \
    --buildinfo-option=-u"$out" --changes-option=-u"$out" \
    --buildinfo-file="$out/narun_${version}_${arch}.buildinfo" \
    --changes-file="$out/narun_${version}_${arch}.changes" >"$out/deb-$arch.log" 2>&1 \
    || { tail -n 40 "$out/deb-$arch.log" >&2; echo "build-all: dpkg-buildpackage failed, log: $out/deb-$arch.log" >&2; exit 1; }
  debian/rules clean >/dev/null

  echo "== $arch: .rpm"
  r=${rpm_arch[$arch]}
  rm -rf "$out/rpmbuild" "$out/narun-${version}-1.$r.rpm"
  rpmbuild -bb --build-in-place --nodeps --target "$r" \
    --define "_topdir $out/rpmbuild" rpm/narun.spec >"$out/rpm-$arch.log" 2>&1 \
    || { tail -n 40 "$out/rpm-$arch.log" >&2; echo "build-all: rpmbuild failed, log: $out/rpm-$arch.log" >&2; exit 1; }
  mv "$out/rpmbuild/RPMS/$r/narun-${version}-1.$r.rpm" "$out/"
  rm -rf "$out/rpmbuild"
  took[$arch]=$((SECONDS - t))
done

{
  printf '%-8s %10s %11s %10s %10s  %s\n' arch narun narun-exec .deb .rpm "build time"
  for arch in "${archs[@]}"; do
    printf '%-8s %10s %11s %10s %10s  %ss\n' "$arch" \
      "$(stat -c %s "$(make --no-print-directory bin-path ARCH="$arch")")" \
      "$(stat -c %s "$(make --no-print-directory exec-bin-path ARCH="$arch")")" \
      "$(stat -c %s "$out/narun_${version}_${arch}.deb")" \
      "$(stat -c %s "$out/narun-${version}-1.${rpm_arch[$arch]}.rpm")" \
      "${took[$arch]}"
  done
  echo "(bytes; binaries: $(for arch in "${archs[@]}"; do file -b "$(make --no-print-directory bin-path ARCH="$arch")" "$(make --no-print-directory exec-bin-path ARCH="$arch")" | grep -o 'not stripped\|stripped'; done | sort -u | tr '\n' ' '))"
} | tee "$out/SIZES"
echo "build-all: ${#archs[@]} architecture(s) in $((SECONDS - start))s: $(for arch in "${archs[@]}"; do printf 'narun_%s_%s.deb narun-%s-1.%s.rpm ' "$version" "$arch" "$version" "${rpm_arch[$arch]}"; done)"

if [ "${NARUN_SKIP_PACKAGE_TESTS:-}" != 1 ]; then
  bash packaging/test-packages.sh "${archs[@]}"
fi
