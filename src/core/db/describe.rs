//! How an action reads in events, status and answers: words an operator knows, never Rust debug
//! text. Next to the action, so a new action is described where it is defined.

use std::fmt;

use super::{DbAction, SaveFirst};

impl fmt::Display for DbAction {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbAction::SetReadOnly => write!(out, "set read-only"),
            DbAction::StepDown => write!(out, "step down (read-only)"),
            DbAction::Promote { epoch, .. } => write!(out, "promote (epoch {epoch})"),
            DbAction::Merge(plan) => write!(out, "merge into {}", plan.winner),
            DbAction::Resume => write!(out, "make writable again"),
            DbAction::Resync {
                node,
                addr,
                transfer,
                save_first,
            } => {
                if *save_first == SaveFirst::BinlogAndDump {
                    write!(out, "save this node's binary log and user databases, then ")?;
                }
                match transfer {
                    Some(transfer) => write!(out, "resync from {node} ({addr}, physical copy from {transfer})"),
                    None => write!(out, "resync from {node} ({addr})"),
                }
            }
            DbAction::ReplicateFrom { node, addr } => write!(out, "replicate from {node} ({addr})"),
            DbAction::StopReplication => write!(out, "stop replication"),
            DbAction::Fence { node, addr, .. } => write!(out, "fence {node} (set {addr} read-only)"),
        }
    }
}
