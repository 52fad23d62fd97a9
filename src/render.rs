//! Human-readable output of `status` and `events`, in the spirit of `pcs status`.

use std::time::{Duration, UNIX_EPOCH};

use gossip_ha_proto::api::{Event, NodeLiveness, NodeStatus, Stall, StatusReport};
use gossip_ha_proto::db::{DbAnnouncement, RepairKind};

use crate::core::db::display_gtid;

/// Roles as the tables and the status line write them: `db,server`.
pub fn role_list(roles: &[gossip_ha_proto::gossip::Role]) -> String {
    roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(",")
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|cell| cell.to_string()).collect());
    for row in rows {
        out += &line(row.clone());
    }
    out
}

pub fn status(report: &StatusReport) -> String {
    let down_after = report.threshold_ms * 2;
    let mut out = format!(
        "Cluster {} as seen by {} (server_threshold {}, down after {}, up {})\n",
        report.cluster_id,
        report.self_name,
        seconds(report.threshold_ms),
        seconds(down_after),
        seconds(report.uptime_ms)
    );
    out += &format!(
        "Server master: {}\n\n",
        report.server_master.as_deref().unwrap_or("none")
    );
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .map(|node| {
            let mut name = node.name.clone();
            if report.server_master.as_deref() == Some(node.name.as_str()) {
                name += " (master)";
            }
            vec![
                name,
                node.addr.clone(),
                role_list(&node.roles),
                node.master.to_string(),
                match node.state {
                    NodeLiveness::Alive => "alive".into(),
                    NodeLiveness::Down => "DOWN".into(),
                },
                if node.is_self {
                    "self".into()
                } else {
                    format!("{} ago", seconds(node.last_contact_ms))
                },
            ]
        })
        .collect();
    out += &table(&["NODE", "ADDRESS", "ROLES", "MASTER", "STATE", "LAST CONTACT"], &rows);
    out + &database_table(report) + &rewrite_table(report)
}

fn rewrite_table(report: &StatusReport) -> String {
    if report.rewrites.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = report
        .rewrites
        .iter()
        .map(|target| {
            vec![
                target.path.clone(),
                target.kind.clone(),
                target.follows.clone(),
                target.value.clone().unwrap_or_else(|| "-".into()),
                match (&target.error, target.ok) {
                    (Some(error), false) => format!("FAILING: {error}"),
                    _ => "ok".into(),
                },
            ]
        })
        .collect();
    format!(
        "\nRewritten files:\n\n{}",
        table(&["PATH", "KIND", "FOLLOWS", "NAMES", "STATE"], &rows)
    )
}

/// The columns of Pandora's "Manage Database HA" view, plus what failover decides on.
fn database_table(report: &StatusReport) -> String {
    let rows: Vec<Vec<String>> = report
        .nodes
        .iter()
        .filter_map(|node| node.db.as_ref().map(|db| (node, db)))
        .map(|(node, db)| database_row(node, db))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nDatabase primary: {}\n\n",
        report.db_primary.as_deref().unwrap_or("none")
    );
    out += &table(
        &[
            "NODE",
            "SQL STATUS",
            "REPLICATION",
            "ROLE",
            "LAG",
            "LAST UPDATE",
            "SQL VERSION",
            "EPOCH",
            "PRIO",
            "GTID",
        ],
        &rows,
    );
    out += &reach_lines(report);
    let problems: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|node| Some((node, node.db.as_ref()?.last_error.as_ref()?)))
        .map(|(node, error)| format!("  {}: {error}\n", who(node)))
        .collect();
    if !problems.is_empty() {
        out += "\nDatabase problems:\n";
        out += &problems.concat();
    }
    out += &warning_lines(report);
    let repairs: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|node| Some((node, node.db.as_ref()?.repair.as_ref()?)))
        .map(|(node, repair)| {
            let what = match repair.kind {
                RepairKind::SplitBrain if repair.fork_gtid.is_empty() => {
                    format!("split-brain, yields to {}, fork unknown", repair.winner)
                }
                RepairKind::SplitBrain => format!(
                    "split-brain, yields to {}, fork at GTID {}",
                    repair.winner, repair.fork_gtid
                ),
                RepairKind::Clone => format!("clone from {}", repair.winner),
                RepairKind::Unrelated => format!(
                    "unrelated history; `gossip-ha resync` saves it, then rebuilds from {}",
                    repair.winner
                ),
                RepairKind::Operator => format!("rebuild from {} asked by an operator", repair.winner),
            };
            let lines: String = [repair.merged.as_ref(), repair.progress.as_ref()]
                .into_iter()
                .flatten()
                .map(|line| format!("\n    {line}"))
                .collect();
            format!("  {}: {} ({what}){lines}\n", who(node), repair.stage.as_str())
        })
        .collect();
    if !repairs.is_empty() {
        out += "\nRepairs and clones:\n";
        out += &repairs.concat();
    }
    out
}

/// One DB node's row. A node whose agent is DOWN shows its last announcement as such: nothing
/// in the row may read as current.
fn database_row(node: &NodeStatus, db: &DbAnnouncement) -> Vec<String> {
    let stale = !node.is_self && node.state == NodeLiveness::Down;
    let last_seen = seconds(node.last_contact_ms);
    let mut role = db.role.as_str().to_string();
    if db.read_only == Some(false) {
        role += " (writable)";
    }
    if db.maintenance {
        role += " [maintenance]";
    }
    let (sql_status, replication, role, lag) = if stale {
        (
            format!("unknown (agent down {last_seen})"),
            "unknown".to_string(),
            format!("{}? (last seen {last_seen} ago)", db.role.as_str()),
            "?".to_string(),
        )
    } else {
        let sql_status = if db.reachable {
            "up".to_string()
        } else {
            format!("DOWN {}", seconds(db.unreachable_for_ms))
        };
        (sql_status, replication_cell(node, db), role, lag_cell(node))
    };
    let gtid = if db.reachable || !db.gtid.is_empty() {
        display_gtid(&db.gtid)
    } else {
        "-".into()
    };
    vec![
        node.name.clone(),
        sql_status,
        replication,
        role,
        lag,
        if node.is_self {
            "now".into()
        } else {
            format!("{last_seen} ago")
        },
        db.version.clone().unwrap_or_else(|| "-".into()),
        db.epoch.to_string(),
        db.priority.to_string(),
        gtid,
    ]
}

/// The threads as the server says, and whether anything reaches the replica.
fn replication_cell(node: &NodeStatus, db: &DbAnnouncement) -> String {
    let (Some(io), Some(sql)) = (&db.io_state, db.sql_running) else {
        return "-".into();
    };
    let threads = format!("IO {io} / SQL {}", if sql { "Yes" } else { "No" });
    let Some(lag) = &node.replication else {
        return threads;
    };
    match (lag.stalled, lag.no_progress_ms) {
        (Some(Stall::NoProgress), Some(unmoved_ms)) => {
            format!("{threads}, STALLED (no progress for {})", seconds(unmoved_ms))
        }
        (Some(stall), _) => format!("{threads}, STALLED ({})", stall.as_str()),
        (None, _) => threads,
    }
}

/// Transactions behind the primary's announced position, and for how long (from GTIDs).
fn lag_cell(node: &NodeStatus) -> String {
    let Some(lag) = &node.replication else {
        return "-".into();
    };
    let at_least = if lag.lag_at_least { ">= " } else { "" };
    match (lag.transactions_behind, lag.lag_ms) {
        (Some(0), _) => "0".into(),
        (Some(count), Some(lag_ms)) => format!("{count} trx, {at_least}{}", seconds(lag_ms)),
        (Some(count), None) => format!("{count} trx"),
        (None, _) => "?".into(),
    }
}

/// A node's name, marked when what follows is only its last announcement.
fn who(node: &NodeStatus) -> String {
    if node.is_self || node.state == NodeLiveness::Alive {
        return node.name.clone();
    }
    format!(
        "{} (last known, agent down {})",
        node.name,
        seconds(node.last_contact_ms)
    )
}

/// Which agents do not reach which DB hosts: nothing when every agent reaches every one.
fn reach_lines(report: &StatusReport) -> String {
    if report.db_reach.is_empty() {
        return String::new();
    }
    let lines: String = report
        .db_reach
        .iter()
        .map(|problem| {
            format!(
                "  {} cannot reach {} ({}) for {}\n",
                problem.observer,
                problem.node,
                problem.address,
                seconds(problem.unreached_ms)
            )
        })
        .collect();
    format!("\nDatabase reach:\n{lines}")
}

/// What puts the answering agent's own database at risk (only it knows its settings).
fn warning_lines(report: &StatusReport) -> String {
    let lines: Vec<String> = report
        .nodes
        .iter()
        .flat_map(|node| node.db_warnings.iter().map(move |warning| (node, warning)))
        .map(|(node, warning)| format!("  {}: {warning}\n", node.name))
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!("\nDatabase warnings:\n{}", lines.concat())
}

pub fn events(events: &[Event]) -> String {
    if events.is_empty() {
        return "no events\n".into();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            let time = UNIX_EPOCH + Duration::from_millis(event.unix_ms);
            vec![
                humantime::format_rfc3339_millis(time).to_string(),
                event.seq.to_string(),
                serde_json::to_value(event.kind)
                    .ok()
                    .and_then(|kind| kind.as_str().map(str::to_string))
                    .unwrap_or_default(),
                event.node.clone().unwrap_or_else(|| "-".into()),
                event.reason.clone(),
            ]
        })
        .collect();
    table(&["TIME (UTC)", "SEQ", "EVENT", "NODE", "REASON"], &rows)
}

#[cfg(test)]
mod tests {
    use gossip_ha_proto::api::ReplicationLag;
    use gossip_ha_proto::db::DbRole;

    use super::*;

    fn node(name: &str, state: NodeLiveness, db: DbAnnouncement, replication: Option<ReplicationLag>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            addr: "198.18.0.11:7946".into(),
            roles: vec![],
            master: 0,
            state,
            last_contact_ms: 15_100,
            generation: 1,
            threshold_ms: 1_000,
            is_self: false,
            db: Some(db),
            db_warnings: vec![],
            replication,
        }
    }

    #[test]
    fn a_db_node_whose_agent_is_down_reads_as_last_known() {
        let primary = DbAnnouncement {
            role: DbRole::Primary,
            reachable: true,
            read_only: Some(false),
            gtid: "0-2-390".into(),
            last_error: Some("error reconnecting to master".into()),
            ..DbAnnouncement::default()
        };
        let down = node("db2", NodeLiveness::Down, primary.clone(), None);
        let row = database_row(&down, &primary).join(" | ");
        assert!(row.contains("unknown (agent down 15.1 s)"), "{row}");
        assert!(row.contains("primary? (last seen 15.1 s ago)"), "{row}");
        assert!(!row.contains(" up ") && !row.contains("(writable)"), "{row}");
        assert_eq!(who(&down), "db2 (last known, agent down 15.1 s)");
        let alive = node("db2", NodeLiveness::Alive, primary.clone(), None);
        let row = database_row(&alive, &primary).join(" | ");
        assert!(row.contains("up | - | primary (writable)"), "{row}");
    }

    #[test]
    fn lag_and_stalls_read_from_gtids() {
        let replica = DbAnnouncement {
            role: DbRole::Replica,
            reachable: true,
            io_state: Some("Connecting".into()),
            sql_running: Some(true),
            lag_seconds: Some(0),
            ..DbAnnouncement::default()
        };
        let lag = |transactions, lag_ms, at_least, stalled, no_progress_ms| ReplicationLag {
            transactions_behind: transactions,
            lag_ms,
            lag_at_least: at_least,
            stalled,
            no_progress_ms,
        };
        let cases = [
            (lag(Some(0), Some(0), false, None, None), "0", "IO Connecting / SQL Yes"),
            (
                lag(Some(102), Some(4_200), false, Some(Stall::IoConnecting), Some(900)),
                "102 trx, 4.2 s",
                "IO Connecting / SQL Yes, STALLED (IO connecting)",
            ),
            (
                lag(Some(7), Some(64_000), true, Some(Stall::NoProgress), Some(6_000)),
                "7 trx, >= 64.0 s",
                "IO Connecting / SQL Yes, STALLED (no progress for 6.0 s)",
            ),
            (lag(None, None, false, None, None), "?", "IO Connecting / SQL Yes"),
        ];
        for (replication, lag_text, threads) in cases {
            let status = node("db1", NodeLiveness::Alive, replica.clone(), Some(replication));
            assert_eq!(lag_cell(&status), lag_text);
            assert_eq!(replication_cell(&status, &replica), threads);
        }
    }

    #[test]
    fn reach_problems_are_listed_and_nothing_when_all_reach_all() {
        let mut report = StatusReport {
            self_name: "srv".into(),
            cluster_id: "c".into(),
            server_master: None,
            db_primary: None,
            threshold_ms: 1_000,
            uptime_ms: 1,
            nodes: vec![],
            rewrites: vec![],
            db_reach: vec![],
        };
        assert_eq!(reach_lines(&report), "");
        report.db_reach.push(gossip_ha_proto::api::ReachProblem {
            observer: "srv".into(),
            node: "db2".into(),
            address: "198.18.0.12:3306".into(),
            unreached_ms: 10_200,
        });
        assert_eq!(
            reach_lines(&report),
            "\nDatabase reach:\n  srv cannot reach db2 (198.18.0.12:3306) for 10.2 s\n"
        );
    }
}
