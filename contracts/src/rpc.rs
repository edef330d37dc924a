//! Typed request-reply pairs: an [`Rpc`] ties a subject to its request and reply types, so a
//! caller cannot send the wrong message to an endpoint or misread its answer.

use serde::{Serialize, de::DeserializeOwned};

/// One endpoint of a micro service: `<group>.<name>` is the subject it listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The micro-service name (`identity`).
    pub service: &'static str,
    /// The subject prefix the endpoint is grouped under (`cb.identity`).
    pub group: &'static str,
    /// The endpoint name inside the group (`user.register`).
    pub name: &'static str,
}

impl Endpoint {
    /// The full subject (`cb.identity.user.register`).
    pub fn subject(&self) -> String {
        format!("{}.{}", self.group, self.name)
    }
}

/// A request-reply contract.
pub trait Rpc {
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Reply: Serialize + DeserializeOwned + Send + Sync + 'static;
    const ENDPOINT: Endpoint;
}

/// An empty request or reply body (`{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Empty {}

/// `rpc!(Name, Request, Reply, ENDPOINT)`: declare the marker type of one request-reply pair.
macro_rules! rpc {
    ($name:ident, $req:ty, $rep:ty, $ep:expr) => {
        #[derive(Debug)]
        pub struct $name;
        impl $crate::rpc::Rpc for $name {
            type Request = $req;
            type Reply = $rep;
            const ENDPOINT: $crate::rpc::Endpoint = $ep;
        }
    };
}
pub(crate) use rpc;
