//! The keys of the platform's central configuration (the NATS KV bucket
//! [`crate::subjects::config::BUCKET`]), each with the one parser every reader uses: the worker
//! that applies a value, `cargo xtask config set` before it writes one.
//!
//! A key is `<service>.<name>`; the service named owns it and applies a new value without a
//! restart. Where the same setting has an environment variable, the variable's value seeds the
//! bucket when the key is missing (the bucket then wins).

/// What kind of value a key holds, and its bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number from `min` to `max`.
    Integer { min: i64, max: i64 },
    /// `true` or `false`.
    Flag,
}

/// One key of the central configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// The environment variable of the same setting, if any.
    pub env: Option<&'static str>,
    pub kind: Kind,
    /// What it does (for `cargo xtask config` and the README).
    pub doc: &'static str,
}

impl Key {
    /// `raw` as this key's integer, or why not.
    pub fn integer(&self, raw: &str) -> Result<i64, String> {
        let Kind::Integer { min, max } = self.kind else {
            return Err(format!("{} is not a number setting", self.name));
        };
        let value: i64 =
            raw.trim().parse().map_err(|_| format!("{} must be a whole number, not {raw:?}", self.name))?;
        if !(min..=max).contains(&value) {
            return Err(format!("{} must be from {min} to {max}, not {value}", self.name));
        }
        Ok(value)
    }

    /// `raw` as this key's flag, or why not.
    pub fn flag(&self, raw: &str) -> Result<bool, String> {
        match (self.kind, raw.trim()) {
            (Kind::Flag, "true") => Ok(true),
            (Kind::Flag, "false") => Ok(false),
            (Kind::Flag, _) => Err(format!("{} must be true or false, not {raw:?}", self.name)),
            _ => Err(format!("{} is not a flag", self.name)),
        }
    }

    /// Whether `raw` is a valid value of this key.
    pub fn validate(&self, raw: &str) -> Result<(), String> {
        match self.kind {
            Kind::Integer { .. } => self.integer(raw).map(|_| ()),
            Kind::Flag => self.flag(raw).map(|_| ()),
        }
    }
}

/// Days after payment a learner may ask for a refund.
pub const REFUND_WINDOW_DAYS: Key = Key {
    name: "payments.refund_window_days",
    env: Some("CB_REFUND_WINDOW_DAYS"),
    kind: Kind::Integer { min: 0, max: 365 },
    doc: "days after payment a learner may ask for a refund",
};

/// A refund needs less than this share of the course done.
pub const REFUND_MAX_PROGRESS_PERCENT: Key = Key {
    name: "payments.refund_max_progress_percent",
    env: Some("CB_REFUND_MAX_PROGRESS_PERCENT"),
    kind: Kind::Integer { min: 0, max: 100 },
    doc: "a refund needs less than this percentage of the course completed",
};

/// Every key, for tools and documentation.
pub const ALL: &[Key] = &[REFUND_WINDOW_DAYS, REFUND_MAX_PROGRESS_PERCENT];

/// The key named `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    ALL.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_the_key() {
        assert_eq!(REFUND_WINDOW_DAYS.integer("30"), Ok(30));
        assert!(REFUND_WINDOW_DAYS.integer("thirty").unwrap_err().contains("whole number"));
        assert!(REFUND_WINDOW_DAYS.integer("400").unwrap_err().contains("from 0 to 365"));
        assert!(REFUND_MAX_PROGRESS_PERCENT.validate("101").is_err());
        assert_eq!(find("payments.refund_window_days"), Some(&REFUND_WINDOW_DAYS));
        assert!(find("payments.nope").is_none());
        let names: std::collections::HashSet<_> = ALL.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), ALL.len(), "key names are unique");
    }
}
