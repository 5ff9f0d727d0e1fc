//! logdrop: ship Tomcat log files from ECS Fargate tasks to CloudWatch Logs
//! through S3, exactly once. See DESIGN.md in the shared folder for the contracts.

pub mod core;
