use gossip_ha_proto::db::DbAnnouncement;
use gossip_ha_proto::gossip::{Announcement, ClusterRequest, ClusterRequestKind};

use super::*;

fn grants(roles: &[Role], admin: bool) -> Grants {
    Grants {
        roles: roles.iter().copied().collect(),
        admin,
    }
}

/// A peer gossiping `roles`, `master 7`, a primary claim for `db_addr` with a huge epoch, and a
/// switchover request: everything a lying peer might say.
fn claiming(name: &str, roles: &[Role], db_addr: &str) -> Observation {
    Observation {
        name: name.into(),
        generation: 1,
        heartbeat: 1,
        addr: "198.18.0.9:7946".into(),
        announcement: Announcement {
            roles: roles.iter().copied().collect(),
            master: 7,
            threshold_ms: 1_000,
            started_unix_ms: 0,
        },
        db: Some(DbAnnouncement {
            claims_primary: true,
            epoch: 1_000_000,
            advertise: db_addr.into(),
            ..DbAnnouncement::default()
        }),
        db_primary: None,
        request: Some(ClusterRequest {
            id: 1,
            kind: ClusterRequestKind::Switchover { to: "db9".into() },
        }),
        answers: Vec::new(),
        db_reach: Vec::new(),
    }
}

fn ha_hosts(hosts: &[&str]) -> AuthorityPolicy {
    AuthorityPolicy {
        ha_hosts: hosts.iter().map(|host| host.to_string()).collect(),
    }
}

#[test]
fn a_console_certificate_claiming_db_and_server_keeps_only_its_console_role() {
    let peer = claiming("console1", &[Role::Db, Role::Server, Role::Console], "198.18.0.9:3306");
    let console = grants(&[Role::Console], false);
    let (seen, refused) = screen(peer, PeerIdentity::Certified(&console), &ha_hosts(&[]));
    assert_eq!(seen.announcement.roles, [Role::Console].into_iter().collect());
    assert_eq!(
        seen.announcement.master, 0,
        "master counts only from a server certificate"
    );
    assert_eq!(seen.db, None, "a DB claim counts only from a db certificate");
    assert_eq!(seen.request, None, "a request counts only from an admin certificate");
    assert_eq!(
        refused,
        [
            "gossips the server role, which its certificate does not grant (it grants console)",
            "gossips the db role, which its certificate does not grant (it grants console)",
            "asks for a switchover to db9, but its certificate grants no admin role (it grants console)",
            "announces a database (198.18.0.9:3306) without the db role",
        ]
    );
}

#[test]
fn what_the_certificate_grants_passes_untouched() {
    let peer = claiming("db1", &[Role::Db, Role::Server], "198.18.0.1:3306");
    let all = grants(&[Role::Db, Role::Server], true);
    let (seen, refused) = screen(peer.clone(), PeerIdentity::Certified(&all), &ha_hosts(&["198.18.0.1"]));
    assert_eq!(seen, peer);
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn a_database_outside_ha_hosts_is_not_a_claim_whatever_the_certificate() {
    let db = grants(&[Role::Db], false);
    let cases: &[(&[&str], &str, bool)] = &[
        (&[], "198.18.0.9:3306", true),
        (&["198.18.0.1", "198.18.0.2"], "198.18.0.2:3306", true),
        (&["db1", "db2"], "198.18.0.2:3306", true),
        (&["198.18.0.1:3306"], "198.18.0.1:3306", true),
        (&["[fd00::1]"], "[fd00::1]:3306", true),
        (&["fd00::1"], "[fd00::1]:3306", true),
        (&["fd00:0::1"], "[fd00::1]:3306", true),
        (&["[fd00::1]:3306"], "[fd00::1]:3306", true),
        (&["DB2.example"], "db2.example:3306", true),
        (&["198.18.0.1", "198.18.0.2"], "198.18.0.9:3306", false),
    ];
    for (hosts, addr, kept) in cases {
        let name = if *addr == "198.18.0.2:3306" { "db2" } else { "db1" };
        let peer = claiming(name, &[Role::Db], addr);
        let (seen, refused) = screen(peer, PeerIdentity::Certified(&db), &ha_hosts(hosts));
        assert_eq!(seen.db.is_some(), *kept, "{hosts:?} {addr}: {refused:?}");
        assert_eq!(seen.announcement.roles.contains(&Role::Db), *kept, "{hosts:?} {addr}");
        if !kept {
            assert!(
                refused.iter().any(|line| line.contains("not in ha_hosts")),
                "{refused:?}"
            );
        }
    }
}

#[test]
fn plain_loopback_gossip_is_believed_except_ha_hosts_and_roles_it_does_not_gossip() {
    let peer = claiming("n1", &[Role::Db, Role::Server], "127.0.0.1:3306");
    let (seen, refused) = screen(peer.clone(), PeerIdentity::Unchecked, &ha_hosts(&[]));
    assert_eq!(seen, peer);
    assert!(refused.is_empty());

    let (seen, _) = screen(peer, PeerIdentity::Unchecked, &ha_hosts(&["127.0.0.2"]));
    assert_eq!(seen.db, None);

    let console = claiming("n2", &[Role::Console], "127.0.0.1:3306");
    let (seen, refused) = screen(console, PeerIdentity::Unchecked, &ha_hosts(&[]));
    assert_eq!((seen.db, seen.announcement.master), (None, 0));
    assert_eq!(refused, ["announces a database (127.0.0.1:3306) without the db role"]);
}

#[test]
fn grants_round_trip_through_certificate_uris() {
    let all = grants(&[Role::Db, Role::Console], true);
    assert_eq!(
        all.uris(),
        [
            "urn:gossip-ha:role:db",
            "urn:gossip-ha:role:console",
            "urn:gossip-ha:role:admin"
        ]
    );
    let read = Grants::from_uris(all.uris().iter().map(String::as_str).chain(["https://example.com/"]));
    assert_eq!(read.unwrap(), all);
    assert_eq!(all.to_string(), "db, console, admin");
    assert_eq!(Grants::default().to_string(), "nothing");
    assert!(Grants::from_uris(["urn:gossip-ha:role:root"]).is_err());
}
