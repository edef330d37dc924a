//! Every subject, stream, consumer and bucket name of the platform. Nothing else in the tree
//! spells one: other crates use these constants and builders.
//!
//! Naming (see DESIGN.md): requests `cb.<domain>.<resource>.<action>`, events
//! `cb.evt.<domain>.<entity>.<event>` in stream `EVT_<DOMAIN>`, jobs `cb.job.<domain>.<kind>`,
//! real-time pushes `cb.rt.<scope>.<id>`.

/// The queue group every micro-service endpoint joins, so replicas share the load.
pub const QUEUE_GROUP: &str = "q";

/// Identity: users, credentials, tokens, roles, profiles.
pub mod identity {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "identity";
    pub const GROUP: &str = "cb.identity";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    pub const USER_REGISTER: Endpoint = ep("user.register");
    pub const AUTH_LOGIN: Endpoint = ep("auth.login");
    pub const AUTH_REFRESH: Endpoint = ep("auth.refresh");
    pub const AUTH_LOGOUT: Endpoint = ep("auth.logout");
    pub const PROFILE_GET: Endpoint = ep("profile.get");
    pub const PROFILE_UPDATE: Endpoint = ep("profile.update");
    pub const ROLE_GRANT: Endpoint = ep("role.grant");
    pub const ROLE_REVOKE: Endpoint = ep("role.revoke");
    pub const JWKS_GET: Endpoint = ep("jwks.get");

    /// The stream holding identity events.
    pub const EVENT_STREAM: &str = "EVT_IDENTITY";
    /// Every identity event subject.
    pub const EVENT_SUBJECTS: &str = "cb.evt.identity.>";
    pub const EVT_USER_REGISTERED: &str = "cb.evt.identity.user.registered";
    pub const EVT_PROFILE_UPDATED: &str = "cb.evt.identity.user.profile_updated";
    pub const EVT_ROLE_GRANTED: &str = "cb.evt.identity.user.role_granted";
    pub const EVT_ROLE_REVOKED: &str = "cb.evt.identity.user.role_revoked";
}

/// The NATS micro-service protocol subjects (`$SRV.PING|INFO|STATS[.<name>[.<id>]]`).
pub mod srv {
    /// `$SRV.PING.<service>`: every replica answers.
    pub fn ping(service: &str) -> String {
        format!("$SRV.PING.{service}")
    }

    /// `$SRV.INFO.<service>`: name, version, description and endpoints of each replica.
    pub fn info(service: &str) -> String {
        format!("$SRV.INFO.{service}")
    }

    /// `$SRV.STATS.<service>`: per-endpoint request and error counts of each replica.
    pub fn stats(service: &str) -> String {
        format!("$SRV.STATS.{service}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_subjects_follow_the_naming_scheme() {
        assert_eq!(identity::USER_REGISTER.subject(), "cb.identity.user.register");
        assert_eq!(identity::JWKS_GET.subject(), "cb.identity.jwks.get");
        for subject in [
            identity::EVT_USER_REGISTERED,
            identity::EVT_PROFILE_UPDATED,
            identity::EVT_ROLE_GRANTED,
            identity::EVT_ROLE_REVOKED,
        ] {
            assert!(subject.starts_with("cb.evt.identity."), "{subject}");
            assert_eq!(subject.split('.').count(), 5, "{subject}");
        }
        assert_eq!(srv::info("identity"), "$SRV.INFO.identity");
    }
}
