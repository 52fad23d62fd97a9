//! `host:port` addresses as configuration and gossip carry them (`db1:3306`, `[fd00::1]:3306`):
//! one place that splits them, so the database layer, the configuration and the pure core agree.
//! A leaf: pure text, it imports nothing of the crate.

/// `host:port`, `[v6]:port` → host (brackets removed) and port; `None` without a number after the
/// last `:` or without a host.
pub fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = bare_host(host);
    Some((host.to_string(), port.parse().ok()?)).filter(|(host, _)| !host.is_empty())
}

/// The host of `host:port` (brackets removed), or the whole text when it has no `:`.
pub fn host_of(addr: &str) -> &str {
    bare_host(addr.rsplit_once(':').map_or(addr, |(host, _)| host))
}

/// `[fd00::1]` → `fd00::1`: entries and addresses may or may not bracket an IPv6 address.
pub fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(split_host_port("127.0.0.1:3306"), Some(("127.0.0.1".into(), 3306)));
        assert_eq!(split_host_port("[::1]:3307"), Some(("::1".into(), 3307)));
        assert_eq!(split_host_port("db1:x"), None);
        assert_eq!(split_host_port(":3306"), None);
    }

    #[test]
    fn the_host_of_an_address_is_without_port_and_brackets() {
        assert_eq!(host_of("10.0.0.1:3306"), "10.0.0.1");
        assert_eq!(host_of("[fd00::1]:3306"), "fd00::1");
        assert_eq!(host_of("db1"), "db1");
        assert_eq!(bare_host("[fd00::1]"), "fd00::1");
    }
}
