//! `gossip-ha init`: writes a host's configuration from what the host already has — Pandora's
//! `pandora_server.conf`, the console's `config.php` — and the roles, name, address and TLS paths
//! given, then says what it guessed and what the operator must check.
//!
//! Pandora's credentials are not copied: the written file names `pandora_server_conf`, so the
//! agent imports `dbuser`/`dbpass`, `master`, `server_threshold` and `ha_hosts` from the one file
//! Pandora already keeps them in. `plan` is pure (tests give it text); `run` reads and writes.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;

/// The package's untouched example (`/etc/gossip-ha/gossip-ha.toml` as installed): init replaces
/// it without `--force`, since nobody wrote it for this host.
pub const PACKAGE_EXAMPLE: &str = include_str!("../deploy/package/gossip-ha.toml");
/// Gossip port when the operator names only the address.
pub const DEFAULT_GOSSIP_PORT: u16 = 7946;
const DEFAULT_DB_PORT: u16 = 3306;
const DEFAULT_INCOMINGDIR: &str = "/var/spool/pandora/data_in";
/// Where Pandora's installers put the console (Debian/Ubuntu, RHEL and SUSE layouts).
pub const CONSOLE_CONFIG_CANDIDATES: &[&str] = &[
    "/var/www/html/pandora_console/include/config.php",
    "/var/www/pandora_console/include/config.php",
    "/srv/www/htdocs/pandora_console/include/config.php",
];
const RELOAD_PANDORA_SERVER: &str = r#"["systemctl", "restart", "pandora_server"]"#;

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    /// The file to write.
    #[arg(long, default_value = "/etc/gossip-ha/gossip-ha.toml")]
    pub config: PathBuf,
    /// Pandora's server configuration on this host: imported at each start (credentials,
    /// master, server_threshold, ha_hosts), and the source of the rewrite targets.
    #[arg(long)]
    pub pandora_server_conf: Option<PathBuf>,
    /// Roles of this host: server, db, console (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub roles: Vec<String>,
    /// This node's name (default: Pandora's `servername`, else the host name); must match its
    /// certificate (`certs issue --name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The address other hosts reach this one at: gossip listens there, and on a DB host it is
    /// the database's advertised address. Without it the agent stays on loopback.
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// Gossip port.
    #[arg(long, default_value_t = DEFAULT_GOSSIP_PORT)]
    pub port: u16,
    /// Peers to contact at start, ip:port[,ip:port…] (default: the other hosts of Pandora's
    /// `ha_hosts`, at the gossip port).
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// Directory holding ca.pem, cert.pem and key.pem (from `gossip-ha certs issue`).
    #[arg(long, default_value = "/etc/gossip-ha/tls")]
    pub tls_dir: PathBuf,
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// The console's config.php (default: looked for where Pandora's installers put it).
    #[arg(long)]
    pub console_config: Option<PathBuf>,
    /// Replace a file someone wrote (the package's untouched example is replaced anyway).
    #[arg(long)]
    pub force: bool,
}

/// What `run` found on the host, given to `plan`.
#[derive(Debug, Default)]
pub struct Found {
    /// Pandora's file: its path and text.
    pub pandora: Option<(PathBuf, String)>,
    pub hostname: String,
    /// The console's config.php, when the console role was asked and one exists.
    pub console_config: Option<PathBuf>,
}

/// The file to write, and what to tell the operator about it.
#[derive(Debug, Default)]
pub struct Plan {
    pub text: String,
    pub guessed: Vec<String>,
    pub check: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0}")]
    Usage(String),
    #[error("{path} exists and is not the package's example: not overwritten (--force replaces it)")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A token of Pandora's file read as the Pandora server reads it (as `config::pandora` does):
/// `#` lines are comments, tokens match case-insensitively, the last occurrence wins.
pub fn pandora_token(text: &str, token: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(|c: char| c.is_ascii_whitespace()))
        .filter(|(name, _)| name.eq_ignore_ascii_case(token))
        .map(|(_, value)| value.trim().to_string())
        .next()
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn quoted_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", items.join(", "))
}

/// The configuration for this host; `Err` only for what no guess can mend.
pub fn plan(args: &InitArgs, found: &Found) -> Result<Plan, InitError> {
    let roles = roles(&args.roles)?;
    let mut plan = Plan::default();
    let pandora = found
        .pandora
        .as_ref()
        .map(|(path, text)| (path.as_path(), text.as_str()));
    let name = node_name(args, pandora, &found.hostname, &mut plan);
    let mut text = format!(
        "# gossip-ha on {name}, written by `gossip-ha init`; check it with\n\
         # `gossip-ha check-config --config {}`.\n",
        args.config.display()
    );
    text += &format!("node_name = {}\n", quoted(&name));
    if let Some(cluster) = &args.cluster_id {
        text += &format!("cluster_id = {}\n", quoted(cluster));
    }
    text += &gossip_lines(args, pandora, &mut plan);
    text += &format!("roles = {}\n", quoted_list(&roles));
    text += &pandora_lines(pandora, &roles, &mut plan);
    text += &tls_lines(args, &mut plan);
    if roles.iter().any(|role| role == "db") {
        text += &db_lines(args, pandora, &mut plan);
    }
    if roles.iter().any(|role| role == "server") {
        text += &server_rewrites(pandora, &mut plan);
    }
    if roles.iter().any(|role| role == "console") {
        text += &console_rewrite(args, found, &mut plan);
    }
    plan.text = text;
    Ok(plan)
}

fn roles(given: &[String]) -> Result<Vec<String>, InitError> {
    let mut roles = Vec::new();
    for role in given.iter().map(|role| role.trim().to_ascii_lowercase()) {
        if !["server", "db", "console"].contains(&role.as_str()) {
            return Err(InitError::Usage(format!(
                "--roles: `{role}` is not a role (expected server, db or console)"
            )));
        }
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn node_name(args: &InitArgs, pandora: Option<(&Path, &str)>, hostname: &str, plan: &mut Plan) -> String {
    if let Some(name) = &args.name {
        return name.clone();
    }
    let servername = pandora.and_then(|(_, text)| pandora_token(text, "servername"));
    let (name, from) = match servername.filter(|name| !name.is_empty()) {
        Some(name) => (name, "Pandora's `servername`"),
        None => (hostname.to_string(), "this host's name"),
    };
    plan.guessed.push(format!(
        "node_name = \"{name}\" from {from}: it must be the name its certificate was issued for (`certs issue --name`)"
    ));
    name
}

fn gossip_lines(args: &InitArgs, pandora: Option<(&Path, &str)>, plan: &mut Plan) -> String {
    let Some(address) = args.address else {
        plan.check.push(
            "no --address: the agent gossips on loopback only and sees no other host; run init again with --address"
                .into(),
        );
        return String::new();
    };
    let listen = std::net::SocketAddr::new(address, args.port);
    let seeds = match &args.seeds {
        Some(seeds) => seeds.clone(),
        None => seeds_from_ha_hosts(pandora, address, args.port, plan),
    };
    if seeds.is_empty() {
        plan.check.push(
            "seeds is empty: this agent waits for the others to contact it; give --seeds ip:port of one or more other hosts"
                .into(),
        );
    }
    format!("listen = \"{listen}\"\nseeds = {}\n", quoted_list(&seeds))
}

/// The other DB hosts of Pandora's `ha_hosts`, at the gossip port: each runs an agent.
fn seeds_from_ha_hosts(pandora: Option<(&Path, &str)>, own: IpAddr, port: u16, plan: &mut Plan) -> Vec<String> {
    let Some(ha_hosts) = pandora.and_then(|(_, text)| pandora_token(text, "ha_hosts")) else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    for host in ha_hosts.split(',').map(str::trim).filter(|host| !host.is_empty()) {
        let ip = crate::address::host_of(host);
        match ip.parse::<IpAddr>() {
            Ok(ip) if ip == own => {}
            Ok(ip) => seeds.push(std::net::SocketAddr::new(ip, port).to_string()),
            Err(_) => plan.check.push(format!(
                "ha_hosts names `{host}`, not an address: add its agent's ip:port to seeds"
            )),
        }
    }
    if !seeds.is_empty() {
        plan.guessed.push(format!(
            "seeds = {} from Pandora's `ha_hosts`, at port {port}",
            quoted_list(&seeds)
        ));
    }
    seeds
}

fn pandora_lines(pandora: Option<(&Path, &str)>, roles: &[String], plan: &mut Plan) -> String {
    let Some((path, text)) = pandora else {
        if roles.iter().any(|role| role == "db") {
            plan.check.push(
                "no --pandora-server-conf: set [db] url (or user/password/host) and replication_user/replication_password"
                    .into(),
            );
        }
        return String::new();
    };
    for (token, what) in [
        ("master", "server master priority"),
        ("server_threshold", "seconds; a peer is down after twice this"),
        ("ha_hosts", "the DB hosts, first preferred"),
        ("dbuser", "the agent's database user"),
    ] {
        match pandora_token(text, token) {
            Some(value) => plan.guessed.push(format!("{token} {value} imported from {} ({what})", path.display())),
            None if token == "ha_hosts" && roles.iter().any(|role| role == "db") => plan.check.push(format!(
                "{} has no live `ha_hosts`: every DB host believes claims from any database; set [db] ha_hosts or Pandora's ha_hosts",
                path.display()
            )),
            None => {}
        }
    }
    format!(
        "# Pandora's tokens (credentials, master, server_threshold, ha_hosts) are imported from\n\
         # this file at each start; a key set here wins over it (check-config names each).\n\
         pandora_server_conf = {}\n",
        quoted(&path.display().to_string())
    )
}

fn tls_lines(args: &InitArgs, plan: &mut Plan) -> String {
    let file = |name: &str| args.tls_dir.join(name).display().to_string();
    let missing: Vec<String> = ["ca.pem", "cert.pem", "key.pem"]
        .iter()
        .map(|name| file(name))
        .filter(|path| !Path::new(path).exists())
        .collect();
    if !missing.is_empty() {
        plan.check.push(format!(
            "missing {}: copy this host's files from `gossip-ha certs issue` there (key.pem mode 0600)",
            missing.join(", ")
        ));
    }
    format!(
        "\n[tls]\nca = {}\ncert = {}\nkey = {}\n",
        quoted(&file("ca.pem")),
        quoted(&file("cert.pem")),
        quoted(&file("key.pem"))
    )
}

/// The local database: its admin connection stays on this host (`host`, pinned so that a
/// rewrite of Pandora's `dbhost` never points the agent at another host's server), and the
/// address other hosts replicate from (`advertise`).
fn db_lines(args: &InitArgs, pandora: Option<(&Path, &str)>, plan: &mut Plan) -> String {
    let dbhost = pandora.and_then(|(_, text)| pandora_token(text, "dbhost"));
    let port = pandora
        .and_then(|(_, text)| pandora_token(text, "dbport"))
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or(DEFAULT_DB_PORT);
    let local = match (&dbhost, args.address) {
        (Some(host), Some(address)) if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip == address) => {
            host.clone()
        }
        (Some(host), None) => host.clone(),
        (_, Some(address)) => address.to_string(),
        (None, None) => "127.0.0.1".to_string(),
    };
    plan.guessed.push(format!(
        "[db] host = \"{local}\", port {port}: the agent's admin connection to the database on this host"
    ));
    let mut text = format!("\n[db]\nhost = {}\n", quoted(&local));
    match args.address {
        Some(address) => {
            let advertise = std::net::SocketAddr::new(address, port);
            plan.guessed.push(format!(
                "[db] advertise = \"{advertise}\": where the other DB hosts replicate from this one"
            ));
            text += &format!("advertise = \"{advertise}\"\n");
        }
        None => plan.check.push(
            "[db] advertise is not set: give --address, or set it to where other hosts reach this database".into(),
        ),
    }
    plan.check.push(
        "the database's own settings (server_id, log_bin, binlog_format = ROW, read_only, …): \
         /usr/share/doc/gossip-ha/examples/mariadb-gossip-ha.cnf"
            .into(),
    );
    text
}

/// A Pandora server reads the primary's address from `pandora_ha_hosts.conf` in its incoming
/// directory and its own `dbhost`; both follow the DB primary.
fn server_rewrites(pandora: Option<(&Path, &str)>, plan: &mut Plan) -> String {
    let Some((path, text)) = pandora else {
        plan.check.push(
            "no --pandora-server-conf: no file of the Pandora server follows the DB primary; add [[rewrite]] targets"
                .into(),
        );
        return String::new();
    };
    let ha_hosts_file = pandora_token(text, "ha_hosts_file")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let incoming = pandora_token(text, "incomingdir").unwrap_or_else(|| DEFAULT_INCOMINGDIR.into());
            Path::new(&incoming).join("conf/pandora_ha_hosts.conf")
        });
    plan.guessed.push(format!(
        "rewrites {} and `dbhost` in {} when the DB primary changes, then restarts pandora_server",
        ha_hosts_file.display(),
        path.display()
    ));
    format!(
        "\n[[rewrite]]\nkind = \"ha_hosts_file\"\npath = {}\nfollows = \"db_primary\"\nreload = {RELOAD_PANDORA_SERVER}\n\
         \n[[rewrite]]\nkind = \"token\"\npath = {}\ntoken = \"dbhost\"\nfollows = \"db_primary\"\nreload = {RELOAD_PANDORA_SERVER}\n",
        quoted(&ha_hosts_file.display().to_string()),
        quoted(&path.display().to_string())
    )
}

fn console_rewrite(args: &InitArgs, found: &Found, plan: &mut Plan) -> String {
    let Some(path) = args.console_config.as_ref().or(found.console_config.as_ref()) else {
        plan.check.push(format!(
            "no console config.php found (looked at {}): give --console-config",
            CONSOLE_CONFIG_CANDIDATES.join(", ")
        ));
        return String::new();
    };
    plan.guessed.push(format!(
        "rewrites $config[\"dbhost\"] in {} when the DB primary changes",
        path.display()
    ));
    plan.check.push(format!(
        "{} must hold a live $config[\"dbhost\"] line (check-config warns otherwise; see insert_if_missing in the README)",
        path.display()
    ));
    format!(
        "\n[[rewrite]]\nkind = \"php\"\npath = {}\ntoken = \"dbhost\"\nfollows = \"db_primary\"\n",
        quoted(&path.display().to_string())
    )
}

/// Reads the host, writes the file (0600) unless someone else's is there, and returns the plan.
pub fn run(args: &InitArgs) -> Result<Plan, InitError> {
    let args = &absolute(args)?;
    let found = look_around(args)?;
    let mut plan = plan(args, &found)?;
    if let Some((path, _)) = &found.pandora {
        if crate::fsutil::readable_by_others(path) {
            plan.check.push(format!(
                "{} holds Pandora's password and every user may read it: the agent refuses it (`chmod 600 {}`)",
                path.display(),
                path.display()
            ));
        }
    }
    refuse_overwrite(args)?;
    write(&args.config, &plan.text)?;
    Ok(plan)
}

/// The agent runs from `/`: every path it is given must be absolute.
fn absolute(args: &InitArgs) -> Result<InitArgs, InitError> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|source| InitError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut args = args.clone();
    args.tls_dir = absolute(&args.tls_dir)?;
    if let Some(path) = &args.pandora_server_conf {
        args.pandora_server_conf = Some(absolute(path)?);
    }
    if let Some(path) = &args.console_config {
        args.console_config = Some(absolute(path)?);
    }
    Ok(args)
}

fn look_around(args: &InitArgs) -> Result<Found, InitError> {
    let pandora = match &args.pandora_server_conf {
        Some(path) => {
            let bytes = crate::fsutil::read_regular_file(path, 1 << 20).map_err(|source| InitError::Io {
                path: path.clone(),
                source,
            })?;
            Some((path.clone(), String::from_utf8_lossy(&bytes).into_owned()))
        }
        None => None,
    };
    let hostname = nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let console_config = CONSOLE_CONFIG_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file());
    Ok(Found {
        pandora,
        hostname,
        console_config,
    })
}

fn refuse_overwrite(args: &InitArgs) -> Result<(), InitError> {
    match std::fs::read_to_string(&args.config) {
        Ok(text) if text == PACKAGE_EXAMPLE || args.force => Ok(()),
        Ok(_) => Err(InitError::Exists {
            path: args.config.clone(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        // Unreadable but present: someone's file all the same.
        Err(_) if !args.force => Err(InitError::Exists {
            path: args.config.clone(),
        }),
        Err(_) => Ok(()),
    }
}

fn write(path: &Path, text: &str) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
}

/// What the operator reads after `init`: what was written, guessed and must be checked.
pub fn report(args: &InitArgs, plan: &Plan) -> String {
    let mut out = format!("wrote {}\n", args.config.display());
    if !plan.guessed.is_empty() {
        out += "guessed:\n";
        for line in &plan.guessed {
            out += &format!("  - {line}\n");
        }
    }
    if !plan.check.is_empty() {
        out += "check:\n";
        for line in &plan.check {
            out += &format!("  - {line}\n");
        }
    }
    out += &format!(
        "next: gossip-ha check-config --config {}, then systemctl enable --now gossip-ha\n",
        args.config.display()
    );
    out
}

#[cfg(test)]
mod tests;
