//! Dev automation shared by `cargo xtask` and the end-to-end tests: install the pinned servers
//! the platform needs and start them on loopback, in folders we own.

pub mod bench;
pub mod process;
pub mod s3;
pub mod stack;
