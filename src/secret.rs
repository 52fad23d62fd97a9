//! Secrets (passwords, connection URLs): a type that shows a mask wherever it is printed or
//! serialised. A leaf: it imports nothing of the crate, so the database layer and the
//! configuration can both use it.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A password. It can only be read through `expose`; printing or serialising it shows a mask,
/// so it cannot leak through logs, events, status or `check-config`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

pub const MASK: &str = "********";

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

/// A connection URL with only its password masked (`mysql://gha:********@127.0.0.1:3306/`): the
/// user, host and port are what an operator checks. Anything not shaped like a URL is masked whole.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return MASK.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    // Options after `?` may carry a password too (`?password=…`): they go whole.
    let path = match path.split_once('?') {
        Some((path, query)) if query.to_ascii_lowercase().contains("pass") => format!("{path}?{MASK}"),
        _ => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
}

/// Serialises a URL secret with only its password masked.
pub fn serialize_url<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&mask_url_password(secret.expose()))
}

/// `serialize_url` for an optional URL.
pub fn serialize_optional_url<S: Serializer>(secret: &Option<Secret>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) => serialize_url(secret, serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_password_of_a_url_is_masked() {
        let cases = [
            (
                "mysql://gha:s3cret@127.0.0.1:3306/",
                "mysql://gha:********@127.0.0.1:3306/",
            ),
            (
                "mysql://gha:p%40ss@[::1]:3307/pandora",
                "mysql://gha:********@[::1]:3307/pandora",
            ),
            ("mysql://gha:a@b@db1:3306", "mysql://gha:********@db1:3306"),
            ("mysql://gha@db1:3306/", "mysql://gha@db1:3306/"),
            (
                "mysql://db1:3306/?socket=/run/mysqld.sock",
                "mysql://db1:3306/?socket=/run/mysqld.sock",
            ),
            ("mysql://gha@db1/?password=x", "mysql://gha@db1/?********"),
            ("not a url s3cret", MASK),
        ];
        for (url, shown) in cases {
            assert_eq!(mask_url_password(url), shown, "{url}");
        }
    }
}
