# Sourced, not run: `cross_env TRIPLE GNU` exports what cargo, the cc crate and pkg-config need to
# build for TRIPLE with Debian's cross toolchain GNU-gcc (e.g. aarch64-unknown-linux-gnu
# aarch64-linux-gnu). Used by build-deb.sh and benches/canceller-arm64/run.sh.
cross_env() {
    local triple=$1 gnu=$2
    local t=${triple//-/_}
    local tu=${t^^}
    export "CARGO_TARGET_${tu}_LINKER=$gnu-gcc"
    export "CC_$t=$gnu-gcc" "CXX_$t=$gnu-g++" "AR_$t=$gnu-ar"
    export "PKG_CONFIG_ALLOW_CROSS_$t=1"
    export "PKG_CONFIG_LIBDIR_$t=/usr/lib/$gnu/pkgconfig:/usr/share/pkgconfig"
}
