//! `/v1` routes, one module per domain: each route maps one REST call to one bus request and
//! the reply to HTTP.

pub mod assessment;
pub mod assignments;
pub mod catalog;
pub mod content;
pub mod enrollment;
pub mod identity;
pub mod notifications;
pub mod payments;
pub mod search;

use crate::error::ApiError;

pub type ApiResult<T> = Result<T, ApiError>;
