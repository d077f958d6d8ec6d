//! Player simulator: ABR controllers, the buffer model and QoE, run offline over network
//! traces on a virtual clock, and live against any HLS URL with emulated bandwidth.

pub mod abr;
pub mod cmcd;
pub mod config;
pub mod demo;
pub mod histogram;
pub mod join;
pub mod live;
pub mod movie;
pub mod network;
pub mod offline;
pub mod output;
pub mod playback;
pub mod plot;
pub mod qoe;
pub mod schedule;
pub mod session;
pub mod trace;
