//! Shared pieces of the benchmarks and the load generator: real editing
//! traces, and CPU and memory readings of a process.

pub mod procstat;
pub mod traces;
