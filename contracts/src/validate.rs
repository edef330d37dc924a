//! Parse, don't validate: newtypes that can only hold valid values. Each constructor returns a
//! [`ValidationError`] naming the field, which becomes `invalid_input` with `details.field`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ErrorBody;

/// A rule broken by one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

impl From<ValidationError> for ErrorBody {
    fn from(err: ValidationError) -> Self {
        ErrorBody::invalid_field(err.field, err.message)
    }
}

/// A syntactically valid e-mail address, trimmed and lower-cased (so uniqueness is case-blind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const FIELD: &'static str = "email";

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let err = |m: &str| ValidationError::new(Self::FIELD, m);
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(err("email is required"));
        }
        if email.len() > 254 {
            return Err(err("email must be at most 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(err("email must look like name@example.com"));
        };
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return Err(err("email must look like name@example.com"));
        }
        let local_ok = local.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(err("email has characters that are not allowed before the @"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
            && labels.last().is_some_and(|tld| tld.len() >= 2 && !tld.chars().all(|c| c.is_ascii_digit()));
        if !labels_ok {
            return Err(err("email domain is not valid"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy (NIST SP 800-63B style: length over composition rules,
/// and no well-known or trivially guessable values). Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Passwords so common that attackers try them first.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "123456789",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "1q2w3e4r5t",
    "iloveyou12",
    "letmein123",
    "welcome123",
    "admin12345",
    "administrator",
    "passw0rd123",
    "football123",
    "baseball123",
    "abcdefghij",
    "abc1234567",
    "trustno1234",
    "sunshine123",
    "princess123",
    "changeme123",
    "0987654321",
    "1111111111",
    "aaaaaaaaaa",
    "coursebus123",
];

impl Password {
    pub const FIELD: &'static str = "password";
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 128;

    /// Check the policy; `email` (when known) must not be reused inside the password.
    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, ValidationError> {
        let err = |m: String| ValidationError::new(Self::FIELD, m);
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(err(format!("password must be at least {} characters", Self::MIN_CHARS)));
        }
        if chars > Self::MAX_CHARS {
            return Err(err(format!("password must be at most {} characters", Self::MAX_CHARS)));
        }
        let mut distinct: Vec<char> = raw.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 5 {
            return Err(err("password must use at least 5 different characters".into()));
        }
        let lower = raw.to_lowercase();
        if COMMON_PASSWORDS.contains(&lower.as_str()) {
            return Err(err("password is too common".into()));
        }
        if let Some(email) = email {
            let local = email.local_part();
            if local.len() >= 4 && lower.contains(local) {
                return Err(err("password must not contain your email address".into()));
            }
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A user's public name: 1 to 80 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub const FIELD: &'static str = "display_name";
    pub const MAX_CHARS: usize = 80;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(ValidationError::new(Self::FIELD, "display_name is required"));
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("display_name must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ValidationError::new(Self::FIELD, "display_name must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text biography, at most 2,000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Bio(String);

impl Bio {
    pub const FIELD: &'static str = "bio";
    pub const MAX_CHARS: usize = 2000;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let bio = raw.trim();
        if bio.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                Self::FIELD,
                format!("bio must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if bio.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(ValidationError::new(Self::FIELD, "bio must not contain control characters"));
        }
        Ok(Self(bio.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a user may do on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Instructor,
    Admin,
}

impl Role {
    pub const FIELD: &'static str = "role";

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Instructor => "instructor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        match raw {
            "student" => Ok(Role::Student),
            "instructor" => Ok(Role::Instructor),
            "admin" => Ok(Role::Admin),
            _ => Err(ValidationError::new(Self::FIELD, "role must be one of student, instructor, admin")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A page size: `limit` or `default`, within 1..=100.
pub fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ValidationError> {
    let limit = limit.unwrap_or(default);
    if (1..=100).contains(&limit) {
        Ok(limit)
    } else {
        Err(ValidationError::new("limit", "limit must be between 1 and 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@@example.com",
            "ada@-example.com",
            "ada@example.c",
            "ada..b@example.com",
            "ada@exa_mple.com",
        ] {
            let err = Email::parse(bad).unwrap_err();
            assert_eq!(err.field, "email", "{bad:?}");
        }
    }

    #[test]
    fn password_policy() {
        let email = Email::parse("grace.hopper@example.com").unwrap();
        assert!(Password::parse("correct horse battery", Some(&email)).is_ok());
        for bad in ["short1!", "aaaaaaaaaaaaaa", "Password123", "my grace.hopper pw", &"x1".repeat(65)] {
            let err = Password::parse(bad, Some(&email)).unwrap_err();
            assert_eq!(err.field, "password", "{bad:?}");
        }
        assert_eq!(format!("{:?}", Password::parse("correct horse battery", None).unwrap()), "Password(***)");
    }

    #[test]
    fn display_name_and_role() {
        assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(81)).is_err());
        assert!(DisplayName::parse("a\u{0007}b").is_err());
        assert_eq!(Role::parse("instructor").unwrap(), Role::Instructor);
        assert_eq!(Role::parse("root").unwrap_err().field, "role");
        assert!(Bio::parse(&"y".repeat(2001)).is_err());
    }
}
