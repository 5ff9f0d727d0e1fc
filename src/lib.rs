//! logdrop: ship Tomcat log files from ECS Fargate tasks to CloudWatch Logs
//! through S3, exactly once. See DESIGN.md in the shared folder for the contracts.

pub mod aws;
pub mod config;
pub mod core;
pub mod generate;
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod shipper;
pub mod sidecar;
pub mod sweeper;
pub mod telemetry;
