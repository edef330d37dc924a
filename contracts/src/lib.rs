//! The language every coursebus service speaks.
//!
//! Subjects, stream and consumer names, request/reply/event types, the error-code enum and the
//! validated newtypes live here and nowhere else. This crate has no database, no HTTP and no async
//! runtime: it is plain data plus the rules that make the data valid.

pub mod assessment;
pub mod catalog;
pub mod content;
pub mod enrollment;
pub mod error;
pub mod event;
pub mod headers;
pub mod identity;
pub mod notifications;
pub mod payments;
pub mod rpc;
pub mod search;
pub mod settings;
pub mod subjects;
pub mod validate;

pub use error::{ErrorBody, ErrorCode};
pub use event::{Actor, Event, EventEnvelope};
pub use rpc::{Endpoint, Rpc};
