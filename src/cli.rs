//! Command-line interface: the flags of `run`/`check-config` are configuration overrides.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{flag_value, Override};

#[derive(Debug, Parser)]
#[command(name = "gossip-ha", version, about = "Quorum-free HA agent for Pandora FMS")]
pub struct Cli {
    #[command(subcommand)]
    pub command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Run the agent (with no configuration: a single-node agent on loopback).
    Run(ConfigArgs),
    /// Print the effective configuration, passwords masked, and exit.
    CheckConfig(ConfigArgs),
    /// Show the cluster as this host's agent sees it.
    Status(ClientArgs),
    /// Make the cluster CA and host certificates for mutual TLS.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Put a database in or out of maintenance (never promoted while on): this host's, or
    /// NODE's (carried there by gossip); needs root or the admin group.
    Maintenance {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Another node of the cluster (default: this one).
        node: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Planned switchover: the primary goes read-only, NODE applies everything and is
    /// promoted, the others follow it; abandoned (primary writable again) if NODE does not
    /// catch up in time. Needs root or the admin group.
    Switchover {
        /// The replica to promote.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Rebuild this host's database from the primary (after a split-brain: merge its rows into
    /// the winner first); needs root or the admin group.
    Resync {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the agent's recent decisions and their reasons.
    Events {
        #[command(flatten)]
        client: ClientArgs,
        /// Show at most this many of the newest events.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write this host's configuration from Pandora's files and the roles given; prints what
    /// it guessed and what to check. Never overwrites a file someone wrote without --force.
    Init(crate::init::InitArgs),
    /// Write the man page and the bash/zsh completions into DIR (the package build runs it).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
}

/// `gossip-ha.1`, `gossip-ha.bash` and `_gossip-ha` in `dir`, generated from these definitions
/// by the binary itself, so that what is shipped always describes the binary beside it.
pub fn generate_docs(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    let mut command = Cli::command();
    command.build();
    let mut written = Vec::new();
    write_man_pages(&command, "gossip-ha", dir, &mut written)?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "gossip-ha.bash"),
        (clap_complete::Shell::Zsh, "_gossip-ha"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "gossip-ha", &mut script);
        let path = dir.join(name);
        std::fs::write(&path, script)?;
        written.push(path);
    }
    Ok(written)
}

/// One page per command, as the pages name them: `gossip-ha-certs-issue(1)`.
fn write_man_pages(
    command: &clap::Command,
    name: &str,
    dir: &std::path::Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone().name(name.to_string())).render(&mut page)?;
    std::fs::write(&path, page)?;
    written.push(path);
    // clap's generated `help` subcommands need no page of their own.
    for sub in command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
    {
        write_man_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA: DIR/ca.pem and DIR/ca-key.pem (0600; keep it off the hosts).
    InitCa {
        #[arg(long)]
        dir: PathBuf,
        /// Named in the CA's subject.
        #[arg(long, default_value = "gossip-ha")]
        cluster: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a host certificate: OUT/cert.pem, OUT/key.pem (0600) and OUT/ca.pem.
    Issue {
        #[arg(long)]
        ca_dir: PathBuf,
        /// The host's node_name: peers check it against the name the agent gossips as.
        #[arg(long)]
        name: String,
        /// Addresses peers dial this host at (its gossip advertise address).
        #[arg(long = "ip")]
        ips: Vec<std::net::IpAddr>,
        /// More DNS names.
        #[arg(long)]
        dns: Vec<String>,
        /// What the host may do, once per role: `db`, `server`, `console` (the roles in its
        /// config), and `admin` (may ask other nodes for a switchover or maintenance). Peers
        /// believe nothing else the host gossips.
        #[arg(long = "role", required = true, value_name = "ROLE")]
        roles: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        /// Keep OUT/key.pem and replace OUT/cert.pem and OUT/ca.pem atomically: a renewal (new
        /// expiry, roles or CA bundle) that a running agent picks up on SIGHUP.
        #[arg(long, conflicts_with = "force")]
        renew: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: i64,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The agent's socket (default: `socket` of --config, else the default path).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Read the socket path from this configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the raw JSON answer.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the agent's answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub node_name: Option<String>,
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Gossip listen address, ip:port.
    #[arg(long)]
    pub listen: Option<String>,
    /// Gossip address peers use to reach this agent, ip:port.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Seed peers, ip:port[,ip:port…].
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Roles of this host: server, db, console (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub roles: Option<Vec<String>>,
    /// Server master priority 0–7, as Pandora's `master` token.
    #[arg(long, allow_negative_numbers = true)]
    pub master: Option<i64>,
    /// Seconds; a peer is down after twice this without a heartbeat.
    #[arg(long, allow_negative_numbers = true)]
    pub server_threshold: Option<f64>,
    /// Path of the local status socket.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Import master, server_threshold and DB tokens from this pandora_server.conf.
    #[arg(long)]
    pub pandora_server_conf: Option<PathBuf>,
    /// Directory for state that survives restarts (the DB epoch).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Local database admin connection, mysql://user:password@host:port/ (prefer the config
    /// file or GOSSIP_HA_DB__URL: flags are visible to other users in `ps`).
    #[arg(long)]
    pub db_url: Option<String>,
    /// host:port replicas use to reach this database.
    #[arg(long)]
    pub db_advertise: Option<String>,
    /// DB promotion priority; higher is preferred.
    #[arg(long)]
    pub db_priority: Option<i64>,
    /// Seconds between probes of the local database.
    #[arg(long)]
    pub db_check_interval: Option<f64>,
    /// Replication user the replicas connect with.
    #[arg(long)]
    pub repl_user: Option<String>,
    /// Replication password (prefer GOSSIP_HA_DB__REPLICATION_PASSWORD).
    #[arg(long)]
    pub repl_password: Option<String>,
    /// Cluster CA certificate (PEM).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// This host's certificate (PEM), issued for its node_name.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// This host's key (PEM, mode 0600).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn overrides(&self) -> Vec<Override> {
        let mut overrides = Vec::new();
        let mut add = |key: &'static str, flag: &'static str, value: Option<config::Value>| {
            if let Some(value) = value {
                overrides.push(Override { key, flag, value });
            }
        };
        let text = |value: &Option<String>| value.clone().map(flag_value);
        let path = |value: &Option<PathBuf>| value.as_ref().map(|path| flag_value(path.display().to_string()));
        add("node_name", "node-name", text(&self.node_name));
        add("cluster_id", "cluster-id", text(&self.cluster_id));
        add("listen", "listen", text(&self.listen));
        add("advertise", "advertise", text(&self.advertise));
        add("seeds", "seeds", self.seeds.clone().map(flag_value));
        add("roles", "roles", self.roles.clone().map(flag_value));
        add("master", "master", self.master.map(flag_value));
        add(
            "server_threshold",
            "server-threshold",
            self.server_threshold.map(flag_value),
        );
        add("socket", "socket", path(&self.socket));
        add(
            "pandora_server_conf",
            "pandora-server-conf",
            path(&self.pandora_server_conf),
        );
        add("state_dir", "state-dir", path(&self.state_dir));
        add("db.url", "db-url", text(&self.db_url));
        add("db.advertise", "db-advertise", text(&self.db_advertise));
        add("db.priority", "db-priority", self.db_priority.map(flag_value));
        add(
            "db.check_interval",
            "db-check-interval",
            self.db_check_interval.map(flag_value),
        );
        add("db.replication_user", "repl-user", text(&self.repl_user));
        add("db.replication_password", "repl-password", text(&self.repl_password));
        add("tls.ca", "tls-ca", path(&self.tls_ca));
        add("tls.cert", "tls-cert", path(&self.tls_cert));
        add("tls.key", "tls-key", path(&self.tls_key));
        overrides
    }
}
