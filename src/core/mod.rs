//! The pure, synchronous rules of logdrop: no I/O, no AWS types.

pub mod batch;
pub mod checkpoint;
pub mod escape;
pub mod events;
pub mod keys;
pub mod ranges;
pub mod segment;
pub mod split;
pub mod timestamp;
pub mod urgent;
pub mod verify;
