//! Service plumbing shared by the stack's programs: one serve loop with graceful shutdown,
//! config loading that names file, line and key, tracing setup and Prometheus helpers.

pub mod body;
pub mod client;
pub mod conditional;
pub mod config;
pub mod conn;
pub mod delta;
pub mod handoff;
pub mod metrics;
pub mod percent;
pub mod server;
pub mod shutdown;
mod stream;
pub mod telemetry;
pub mod tls;

pub use body::Body;
pub use config::{ConfigError, Problem};
pub use server::{
    InProcess, Listen, Listener, ServerConfig, ServerLimits, bind, serve, serve_listeners,
    serve_main,
};
