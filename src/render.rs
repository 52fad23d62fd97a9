//! Human-readable output of `status` and `events`, in the spirit of `pcs status`.

use std::time::{Duration, UNIX_EPOCH};

use gossip_ha_proto::api::{Event, NodeLiveness, StatusReport};
use gossip_ha_proto::db::RepairKind;

use crate::agent::role_list;

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
        .map(|(node, db)| {
            let sql_status = if db.reachable {
                "up".to_string()
            } else {
                format!("DOWN {}", seconds(db.unreachable_for_ms))
            };
            let replication = match (&db.io_state, db.sql_running) {
                (Some(io), Some(sql)) => format!("IO {io} / SQL {}", if sql { "Yes" } else { "No" }),
                _ => "-".into(),
            };
            let mut role = db.role.as_str().to_string();
            if db.read_only == Some(false) {
                role += " (writable)";
            }
            if db.maintenance {
                role += " [maintenance]";
            }
            vec![
                node.name.clone(),
                sql_status,
                replication,
                role,
                db.lag_seconds.map_or("-".into(), |lag| format!("{lag} s")),
                if node.is_self {
                    "now".into()
                } else {
                    format!("{} ago", seconds(node.last_contact_ms))
                },
                db.version.clone().unwrap_or_else(|| "-".into()),
                db.epoch.to_string(),
                db.priority.to_string(),
                if db.gtid.is_empty() {
                    "-".into()
                } else {
                    db.gtid.clone()
                },
            ]
        })
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
            "DELAY",
            "LAST UPDATE",
            "SQL VERSION",
            "EPOCH",
            "PRIO",
            "GTID",
        ],
        &rows,
    );
    let problems: Vec<String> = report
        .nodes
        .iter()
        .filter_map(|node| Some((node, node.db.as_ref()?.last_error.as_ref()?)))
        .map(|(node, error)| format!("  {}: {error}\n", node.name))
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
            format!("  {}: {} ({what}){lines}\n", node.name, repair.stage.as_str())
        })
        .collect();
    if !repairs.is_empty() {
        out += "\nRepairs and clones:\n";
        out += &repairs.concat();
    }
    out
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
