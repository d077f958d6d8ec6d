//! HLS-aware HTTP caching reverse proxy. Filled in by the edge issue.
