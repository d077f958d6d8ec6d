//! Load tools for the benchmarks in `bench/`; see the binaries.

/// The bytes of every benchmark object: a 251-byte cycle, so a body cut or shifted anywhere
/// does not match the original.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}
