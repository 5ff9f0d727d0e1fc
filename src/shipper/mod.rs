//! The shipper Lambda: S3 chunk objects into CloudWatch Logs, exactly once.

pub mod audit;
pub mod checkpoint;
pub mod chunk;
pub mod classify;
pub mod config;
pub mod handler;
pub mod inventory;
pub mod invocation;
pub mod lease;
pub mod metrics;
pub mod object;
pub mod outcome;
pub mod pipeline;
pub mod poll;
pub mod prelease;
pub mod pump;
pub mod replay;
pub mod segment;
pub mod sink;
pub mod trigger;
pub mod verify;

pub use config::Config;
pub use handler::{HandlerError, Response, Shipper};
pub use invocation::Invocation;
