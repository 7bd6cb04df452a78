#!/usr/bin/env bash
# Build the job's OCI image without pulling a base image: `make image` runs this.
#
#   deploy/image/build.sh OUT_DIR
#
# 1. pip (on the host) fetches the runtime wheels pinned in requirements.lock for the image's
#    Python (Debian bookworm's 3.11, manylinux x86_64) into a staging folder, with the job's own
#    wheel. Only wheels: nothing is compiled, so no compiler ever enters the image.
# 2. mmdebstrap builds a minimal Debian rootfs (the Essential packages, python3, ca-certificates,
#    libstdc++6 for pyarrow)
#    from Debian's archive, copies the staging folder in, byte-compiles it, adds the nonroot user
#    (UID 65532) and drops documentation, apt's lists and caches: one tarball.
# 3. umoci packs that tarball as the single layer of an OCI image layout OUT_DIR/oci (tag
#    batch-override:VERSION), with the entry point, the user and the labels.
#
# Needs: mmdebstrap, umoci (Debian packages; .ci/run installs them), python3 with pip, root (or
# mmdebstrap's unshare mode). The API key or any other secret never enters the build: nothing
# here reads the environment beyond SOURCE_DATE_EPOCH.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:?usage: build.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
python="${PYTHON:-python3}"
suite=bookworm
started=$(date +%s)

version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/batch_override/_version.py")"
commit="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]; then commit="$commit-dirty"; fi
# Timestamps in the rootfs and the image config come from the commit: the same commit builds the
# same files (Debian's archive moves on, so the packages' versions may not).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"

work="$(mktemp -d "${TMPDIR:-/tmp}/batch-override-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "image: wheels for the image's Python (from requirements.lock)"
# From a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
mkdir -p "$work/src"
cp -a "$repo/pyproject.toml" "$repo/README.md" "$repo/batch_override" "$work/src/"
find "$work/src" -name __pycache__ -type d -prune -exec rm -rf {} +
"$python" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/wheels" "$work/src"
# The lock pins dev tools too; only what the job's wheel depends on is installed.
"$python" -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-compile --target "$work/site" \
    --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -c "$repo/requirements.lock" "$work"/wheels/batch_override-*.whl
# Headers, Cython sources and test suites are for building and testing those packages, not us.
rm -rf "$work/site/bin" "$work/site/pyarrow/include" "$work/site/pyarrow/src" \
       "$work/site/numpy/_core/include" "$work/site/numpy/f2py"
find "$work/site" \( -name tests -o -name __pycache__ \) -type d -prune -exec rm -rf {} +
find "$work/site" \( -name '*.pxd' -o -name '*.pyx' -o -name '*.h' \) -type f -delete
# Arrow Flight (RPC) is not used by the job: ~40 MB. pip copies a library's symlinks as files:
# make them symlinks again (~5 MB each).
rm -f "$work/site/pyarrow/"*flight* "$work/site/pyarrow/_pyarrow_cpp_tests"*
for lib in "$work/site/pyarrow/"lib*.so.[0-9]*[0-9]; do
    case "$lib" in *.so.*.*) continue ;; esac  # the SONAME file (libX.so.2600) stays
    for copy in "${lib%.so.*}.so" "$lib".*; do
        if [ -f "$copy" ] && [ ! -L "$copy" ] && cmp -s "$copy" "$lib"; then
            ln -sf "$(basename "$lib")" "$copy"
        fi
    done
done

# Perl (~60 MB) is Essential only for dpkg's maintainer scripts, and nothing installs packages in
# the image after this build; glibc's iconv modules are unused by Python's own codecs.
remove_unused='rm -rf "$1"/usr/bin/perl* "$1"/usr/lib/x86_64-linux-gnu/perl* "$1"/usr/lib/x86_64-linux-gnu/libperl* "$1"/usr/share/perl "$1"/usr/share/perl5 "$1"/usr/lib/x86_64-linux-gnu/gconv'

echo "image: Debian $suite rootfs (mmdebstrap)"
mmdebstrap --quiet --mode=root --variant=essential --include=python3,ca-certificates,libstdc++6 \
    --format=tar \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="mkdir -p \"\$1/opt/batch-override\" && cp -a '$work/site' \"\$1/opt/batch-override/site\"" \
    --customize-hook="install -m 0755 '$here/entrypoint.py' \"\$1/usr/local/bin/batch-override\"" \
    --customize-hook='chroot "$1" python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/batch-override/site /usr/lib/python3.11 >/dev/null || true' \
    --customize-hook='echo "nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin" >> "$1/etc/passwd"' \
    --customize-hook='echo "nonroot:x:65532:" >> "$1/etc/group"' \
    --customize-hook='echo "nonroot:!:1::::::" >> "$1/etc/shadow"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/* "$1"/var/log/* "$1"/usr/share/doc "$1"/usr/share/man' \
    --customize-hook="$remove_unused" \
    "$suite" "$work/rootfs.tar" \
    "deb http://deb.debian.org/debian $suite main" \
    "deb http://deb.debian.org/debian-security $suite-security main"

echo "image: OCI layout (umoci)"
image="$out/oci"
tag="$version"
rm -rf "$image"
umoci init --layout "$image"
umoci new --image "$image:$tag"
umoci raw add-layer --image "$image:$tag" "$work/rootfs.tar"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
umoci config --image "$image:$tag" \
    --config.user 65532:65532 \
    --config.entrypoint /usr/local/bin/batch-override \
    --config.workingdir /tmp \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin \
    --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.env LANG=C.UTF-8 \
    --created "$created" --author "batch-override" \
    --config.label "org.opencontainers.image.title=batch-override" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.revision=$commit" \
    --config.label "org.opencontainers.image.source=deploy/image/build.sh" \
    --config.label "org.opencontainers.image.licenses=MIT" \
    --config.label "org.opencontainers.image.base.name=debian:$suite (mmdebstrap, essential)"
umoci gc --layout "$image"
echo "$tag" > "$out/tag"

layers=$(du -sb "$image/blobs" | cut -f1)
rootfs=$(stat -c %s "$work/rootfs.tar")
printf 'image: %s:%s (revision %s)\n' "$image" "$tag" "$commit"
printf 'image size: %d MB compressed (OCI blobs), %d MB unpacked; built in %d s\n' \
    $((layers / 1000000)) $((rootfs / 1000000)) $(( $(date +%s) - started ))
