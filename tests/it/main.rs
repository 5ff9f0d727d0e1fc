//! Integration tests: the real binaries' code against moto's server through
//! the real AWS SDK clients.

mod moto;
mod rig;
mod shipper;
mod shipper_bad_input;
mod shipper_cli;
mod sidecar;
mod sidecar_faults;
mod sidecar_proxy;
mod sidecar_rig;
mod sidecar_segments;
