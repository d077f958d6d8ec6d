//! Player simulator: ABR controllers, the buffer model and QoE, run offline over network
//! traces on a virtual clock (live mode against an HLS URL is the next step; see the issue).

pub mod abr;
pub mod join;
pub mod movie;
pub mod network;
pub mod offline;
pub mod qoe;
pub mod schedule;
pub mod trace;
