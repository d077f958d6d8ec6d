//! Load tools for the benchmarks in `bench/`; see the binaries.
