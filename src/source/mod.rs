//! Data sources beyond plain paths: things that must be asked for a consistent copy.

pub mod etcd;
pub mod postgres;
pub mod process;
pub mod s3;
