//! The `gossip-ha` binary: exit 0 on success, 2 on a usage or configuration error, 1 on a
//! runtime failure.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gossip_ha::cli::{CertsCommand, Cli, CliCommand, ClientArgs};
use gossip_ha::client;
use gossip_ha::config::{default_socket_path, LogFormat, Settings};
use gossip_ha::render;
use gossip_ha_proto::api::Command;

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;
/// How long `check-config` tries the local database: connecting, asking and closing together.
const CHECK_DB_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs as its configuration says, so it starts logging once that is loaded.
    if !matches!(cli.command, CliCommand::Run(_)) {
        init_logging(LogFormat::Text);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(EXIT_RUNTIME, format!("cannot start the runtime: {err}")),
    };
    runtime.block_on(dispatch(cli.command))
}

/// Text for people on a terminal or in the journal; JSON lines (one object per line, the
/// event's kind, node and reason as fields) for log collectors.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,chitchat=warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gossip-ha: {message}");
    ExitCode::from(code)
}

async fn dispatch(command: CliCommand) -> ExitCode {
    match command {
        CliCommand::Run(args) => {
            let settings = match Settings::load(args.config.as_deref(), &args.overrides()) {
                Ok(settings) => settings,
                Err(err) => return fail(EXIT_CONFIG, err),
            };
            init_logging(settings.log_format);
            match gossip_ha::agent::run(settings, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) if err.is_configuration() => fail(EXIT_CONFIG, err),
                Err(err) => fail(EXIT_RUNTIME, err),
            }
        }
        CliCommand::CheckConfig(args) => check_config(args.config.as_deref(), &args.overrides()).await,
        CliCommand::Certs(command) => certs(command),
        CliCommand::Status(args) => query(&args, Command::Status).await,
        CliCommand::Events { client, limit } => query(&client, Command::Events { limit }).await,
        CliCommand::Resync { client } => query(&client, Command::Resync).await,
        CliCommand::Maintenance { state, node, client } => {
            let on = state == "on";
            query(&client, Command::Maintenance { on, node }).await
        }
        CliCommand::Switchover { to, client } => query(&client, Command::Switchover { to }).await,
        CliCommand::Init(args) => init(&args),
        CliCommand::GenerateDocs { out } => match gossip_ha::cli::generate_docs(&out) {
            Ok(paths) => {
                paths.iter().for_each(|path| println!("wrote {}", path.display()));
                ExitCode::SUCCESS
            }
            Err(err) => fail(EXIT_RUNTIME, format!("{}: {err}", out.display())),
        },
    }
}

fn init(args: &gossip_ha::init::InitArgs) -> ExitCode {
    use gossip_ha::init::InitError;
    match gossip_ha::init::run(args) {
        Ok(plan) => {
            print!("{}", gossip_ha::init::report(args, &plan));
            ExitCode::SUCCESS
        }
        Err(err @ (InitError::Usage(_) | InitError::Exists { .. })) => fail(EXIT_CONFIG, err),
        Err(err) => fail(EXIT_RUNTIME, err),
    }
}

/// Prints the effective configuration and what is worth knowing about it; refuses what `run`
/// refuses, the TLS identity included (loaded exactly as `run` loads it).
async fn check_config(config: Option<&std::path::Path>, overrides: &[gossip_ha::config::Override]) -> ExitCode {
    let (settings, notes) = match Settings::check(config, overrides) {
        Ok(checked) => checked,
        Err(err) => return fail(EXIT_CONFIG, err),
    };
    if let Err(err) = gossip_ha::gossip::load_identity(&settings) {
        return fail(EXIT_CONFIG, err);
    }
    let text = match toml::to_string(&settings) {
        Ok(text) => text,
        Err(err) => return fail(EXIT_RUNTIME, format!("cannot print the configuration: {err}")),
    };
    println!("# effective configuration of gossip-ha (passwords masked)");
    print_overrides(&notes.overrides);
    print!("{text}");
    for warning in &notes.warnings {
        eprintln!("gossip-ha: warning: {warning}");
    }
    if let Some(db) = &settings.db_agent {
        check_binlog(db.url.expose()).await;
    }
    ExitCode::SUCCESS
}

/// Keys set both in `pandora_server.conf` and later, as TOML comments: the printed file stays
/// valid TOML.
fn print_overrides(overrides: &[String]) {
    if overrides.is_empty() {
        return;
    }
    println!("# set in pandora_server.conf and again later; the later source wins:");
    for line in overrides {
        println!("#   {line}");
    }
}

/// Says on stderr whether the local server's binary log lets a split-brain merge copy rows
/// exactly. Never fails the check: the configuration is right either way, and the server may
/// not run yet where the file is checked.
async fn check_binlog(url: &str) {
    match gossip_ha::db::mysql::check_binlog(url, CHECK_DB_TIMEOUT).await {
        Ok(None) => {}
        Ok(Some(warning)) => eprintln!("gossip-ha: warning: {warning}"),
        Err(why) => {
            eprintln!("gossip-ha: the local database's binlog_format and binlog_row_image were not checked: {why}")
        }
    }
}

fn certs(command: CertsCommand) -> ExitCode {
    use gossip_ha::core::authority::{Grants, GRANT_URI_PREFIX};
    use gossip_ha::tls::certs::{init_ca, issue, HostKey, HostRequest};
    let written = match command {
        CertsCommand::InitCa { dir, cluster, force } => init_ca(&dir, &cluster, force),
        CertsCommand::Issue {
            ca_dir,
            name,
            ips,
            dns,
            roles,
            out,
            renew,
            days,
            force,
        } => {
            if days < 1 {
                return fail(EXIT_CONFIG, "--days: expected at least 1");
            }
            let uris = roles
                .iter()
                .map(|role| format!("{GRANT_URI_PREFIX}{}", role.trim().to_ascii_lowercase()));
            let grants = match Grants::from_uris(uris.collect::<Vec<_>>().iter().map(String::as_str)) {
                Ok(grants) => grants,
                Err(err) => {
                    return fail(
                        EXIT_CONFIG,
                        format!("--role: {err} (expected db, server, console or admin)"),
                    )
                }
            };
            let key = if renew { HostKey::Keep } else { HostKey::Generate };
            let request = HostRequest::valid_for_days(&name, ips, dns, days).with_grants(grants);
            issue(&ca_dir, &request, &out, key, force)
        }
    };
    match written {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(EXIT_RUNTIME, err),
    }
}

async fn query(args: &ClientArgs, command: Command) -> ExitCode {
    let socket = match (&args.socket, &args.config) {
        (Some(socket), _) => socket.clone(),
        (None, Some(config)) => match Settings::load(Some(config), &[]) {
            Ok(settings) => settings.socket,
            Err(err) => return fail(EXIT_CONFIG, err),
        },
        (None, None) => default_socket_path(),
    };
    if !args.timeout.is_finite() || args.timeout <= 0.0 {
        return fail(
            EXIT_CONFIG,
            format!("--timeout: expected positive seconds, got {}", args.timeout),
        );
    }
    // Commands that wait for the cluster are bounded by the agent, which always answers.
    let waits = matches!(
        command,
        Command::Switchover { .. } | Command::Maintenance { node: Some(_), .. } | Command::Resync
    );
    let timeout = if waits {
        Duration::from_secs_f64(args.timeout).max(Duration::from_secs(3_700))
    } else {
        Duration::from_secs_f64(args.timeout)
    };
    let asked = match command {
        // Progress goes to stderr: stdout holds the answer alone.
        Command::Resync => client::resync(&socket, timeout, |event| eprintln!("… {}", event.reason)).await,
        command => client::request(&socket, command, timeout).await,
    };
    let response = match asked {
        Ok(response) => response,
        Err(err) => return fail(EXIT_RUNTIME, err),
    };
    if let Some(done) = &response.done {
        println!("{done}");
        return ExitCode::SUCCESS;
    }
    let printed = match (&response.status, &response.events) {
        (Some(status), _) if args.json => serde_json::to_string_pretty(status).map(|json| json + "\n"),
        (_, Some(events)) if args.json => serde_json::to_string_pretty(events).map(|json| json + "\n"),
        (Some(status), _) => Ok(render::status(status)),
        (_, Some(events)) => Ok(render::events(events)),
        (None, None) => return fail(EXIT_RUNTIME, "the agent's answer was empty"),
    };
    match printed {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(EXIT_RUNTIME, err),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut interrupt)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop the agent with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}
