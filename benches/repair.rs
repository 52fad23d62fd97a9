//! Split-brain repair against real MariaDB servers (issue #7's measurements):
//!
//!     cargo bench --bench repair -- [--rows N]
//!     cargo bench --bench repair -- --clone-gib G
//!
//! Two servers on loopback, `loser` holding N `tagente_datos` rows of a split-brain window that
//! `winner` lacks. Measured: gossip-ha's merge (and its idempotent re-run) against the manual's
//! `mariadb-dump --where … | mariadb`; gossip-ha's logical and physical (mariabackup over the
//! mutual-TLS transfer channel) rebuilds of `loser` from `winner` against a plain `mariabackup`
//! to disk + copy + prepare. With `--clone-gib G`: a new, empty server cloned from a primary
//! holding G GiB of `tagente_datos`, the same three ways.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mariadb::{scalar, sql, MariaDb, Setup};
use gossip_ha::config::MergeTable;
use gossip_ha::core::db::{MergePlan, SaveFirst};
use gossip_ha::db::repair::{self, PhysicalSetup, Progress, RepairContext};
use gossip_ha::tls::identity::{IdentityHandle, TlsFiles, TlsIdentity};
use gossip_ha_proto::gossip::Role;

const WINDOW_START_S: u64 = 1_800_000_000;

/// The value after `--name` on the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .cloned()
}

fn rows() -> u64 {
    flag("--rows")
        .map(|value| value.parse().expect("--rows N"))
        .unwrap_or(200_000)
}

fn schema(db: &MariaDb) {
    sql(
        &db.admin_url(),
        &[
            "CREATE DATABASE pandora",
            "CREATE TABLE pandora.tagente_datos (id_agente_modulo INT NOT NULL, datos DOUBLE, utimestamp BIGINT NOT NULL DEFAULT 0, KEY (id_agente_modulo, utimestamp))",
        ],
    )
    .unwrap();
}

/// Over the socket and without the 5-s bound of `sql`: counting gigabytes on a server that
/// just started cold takes longer.
fn count(db: &MariaDb) -> u64 {
    db.query_root("SELECT COUNT(*) FROM pandora.tagente_datos")
        .parse()
        .unwrap_or(0)
}

fn shell(command: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .args(["-c", command])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "`{command}` failed");
    started.elapsed()
}

fn client_args(db: &MariaDb) -> String {
    format!(
        "-h {} -P {} -u {} -p{}",
        db.ip,
        db.port,
        common::mariadb::ADMIN_USER,
        common::mariadb::ADMIN_PASSWORD
    )
}

fn identity(dir: &std::path::Path, name: &str) -> TlsIdentity {
    use gossip_ha::core::authority::Grants;
    use gossip_ha::tls::certs::{issue, HostKey, HostRequest};
    let ca = dir.join("ca");
    let out = dir.join(format!("certs-{name}"));
    let grants = Grants {
        roles: [Role::Db].into_iter().collect(),
        admin: false,
    };
    let request = HostRequest::valid_for_days(name, vec!["127.0.0.1".parse().unwrap()], vec![], 1).with_grants(grants);
    issue(&ca, &request, &out, HostKey::Generate, false).unwrap();
    let files = TlsFiles {
        ca: out.join("ca.pem"),
        cert: out.join("cert.pem"),
        key: out.join("key.pem"),
    };
    TlsIdentity::load(&files, name, &[Role::Db].into_iter().collect()).unwrap()
}

fn mib(bytes: f64) -> f64 {
    bytes / 1_048_576.0
}

/// Rebuilds `loser` from `winner` (which holds `rows` rows of `tagente_datos`): gossip-ha's
/// logical copy, its physical copy over mutual TLS, and the manual's plain procedure.
fn rebuilds(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    context: &mut RepairContext,
    loser: &mut MariaDb,
    winner: &MariaDb,
    rows: u64,
) {
    let (sender, _receiver) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let size: f64 = scalar(
        &winner.admin_url(),
        "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES",
    )
    .and_then(|size| size.parse().ok())
    .unwrap_or(0.0);
    println!("`winner` holds {:.1} MiB of tables", mib(size));
    let started = Instant::now();
    let line = runtime
        .block_on(repair::resync(
            context,
            "winner",
            &winner.advertise(),
            None,
            SaveFirst::Nothing,
            &mut Progress::new(sender.clone()),
            &stop,
        ))
        .unwrap();
    println!(
        "gossip-ha logical resync:  {:>6.2} s  ({line})",
        started.elapsed().as_secs_f64()
    );

    gossip_ha::tls::certs::init_ca(&dir.join("ca"), "bench", false).unwrap();
    let server = IdentityHandle::new(identity(dir, "winner"));
    let client = IdentityHandle::new(identity(dir, "loser"));
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let transfer_addr = listener.local_addr().unwrap().to_string();
    let source = Arc::new(gossip_ha::transfer::BackupSource {
        local: mysql_async::Opts::from_url(&winner.admin_url()).unwrap(),
        work_dir: dir.join("transfer"),
        timeout: Duration::from_secs(3_600),
        cluster_id: "bench".into(),
        ha_hosts: Vec::new(),
        members: Default::default(),
    });
    let (stop_serving, serving) = tokio::sync::watch::channel(false);
    let service = runtime.spawn(gossip_ha::transfer::serve(
        listener,
        Some(server),
        source,
        Arc::new(|_| {}),
        serving,
    ));
    context.physical = Some(PhysicalSetup {
        datadir: loser.datadir(),
        stop_command: loser.stop_command(),
        start_command: loser.start_command(),
        tls: Some(client),
        cluster_id: "bench".into(),
        node_name: "loser".into(),
    });
    let started = Instant::now();
    let line = runtime
        .block_on(repair::resync(
            context,
            "winner",
            &winner.advertise(),
            Some(&transfer_addr),
            SaveFirst::Nothing,
            &mut Progress::new(sender.clone()),
            &stop,
        ))
        .unwrap();
    println!(
        "gossip-ha physical resync: {:>6.2} s  ({line})",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(count(loser), rows);
    let _ = stop_serving.send(true);
    let _ = runtime.block_on(service);

    let backup = dir.join("plain-backup");
    let copy = dir.join("plain-copy");
    let options = format!(
        "--host={} --port={} --user={} --password={}",
        winner.ip,
        winner.port,
        common::mariadb::ADMIN_USER,
        common::mariadb::ADMIN_PASSWORD
    );
    let backed_up = shell(&format!(
        "mariabackup --backup {options} --target-dir={} 2>/dev/null",
        backup.display()
    ));
    let copied = shell(&format!("cp -a {} {}", backup.display(), copy.display()));
    let prepared = shell(&format!(
        "mariabackup --prepare --target-dir={} 2>/dev/null",
        copy.display()
    ));
    println!(
        "plain mariabackup + copy + prepare: {:>6.2} s (backup {:.2} s, copy {:.2} s, prepare {:.2} s; no restart, no re-pointing)",
        (backed_up + copied + prepared).as_secs_f64(),
        backed_up.as_secs_f64(),
        copied.as_secs_f64(),
        prepared.as_secs_f64()
    );
}

/// Cloning a new replica from a primary holding `gib` GiB of `tagente_datos` (Pandora's own
/// table definition), the manual's "Database cloning": gossip-ha's logical and physical clones
/// against `mariabackup --backup`, copy and `--prepare`.
fn clone_bench(gib: f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut loser = MariaDb::install_set_up(dir.path(), "new", 1, true, "127.0.0.1", None, Setup::Clean);
    let mut winner = MariaDb::install_as_operators(dir.path(), "primary", 2);
    // Production-sized buffers, as a primary holding gigabytes runs with.
    for server in [&mut loser, &mut winner] {
        server.restart_with(&[
            "--innodb-buffer-pool-size=2G",
            "--innodb-log-file-size=1G",
            "--max-allowed-packet=64M",
        ]);
    }
    winner.load_pandora(0);
    winner.admin(&["SET GLOBAL read_only = OFF"]);
    let size_sql = "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'pandora'";
    let target = gib * 1_073_741_824.0;
    let started = Instant::now();
    let mut rows: u64 = 0;
    loop {
        let size: f64 = winner.query_root(size_sql).parse().unwrap_or(0.0);
        if size >= target {
            println!(
                "`primary` holds {rows} rows, {:.0} MiB of tagente_datos (filled in {:.0} s)",
                mib(size),
                started.elapsed().as_secs_f64()
            );
            break;
        }
        winner.admin_script(
            "pandora",
            &format!(
                "INSERT INTO tagente_datos (id_agente_modulo, datos, utimestamp) \
                 SELECT seq % 2000, seq * 0.5, {WINDOW_START_S} + ({rows} + seq) DIV 2000 FROM seq_1_to_1000000;\n\
                 ANALYZE TABLE tagente_datos;"
            ),
        );
        rows += 1_000_000;
    }
    winner.admin(&["SET GLOBAL read_only = ON"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut context = context_for(dir.path(), &loser);
    rebuilds(&runtime, dir.path(), &mut context, &mut loser, &winner, rows);
    loser.kill();
}

fn context_for(dir: &std::path::Path, loser: &MariaDb) -> RepairContext {
    RepairContext {
        node: "loser".into(),
        local: mysql_async::Opts::from_url(&loser.admin_url()).unwrap(),
        database: "pandora".into(),
        tables: vec![MergeTable {
            name: "tagente_datos".into(),
            time_column: "utimestamp".into(),
            fresh_id: None,
        }],
        batch_rows: 1_000,
        state_dir: dir.join("state"),
        statement_timeout: Duration::from_secs(120),
        resync_timeout: Duration::from_secs(3_600),
        physical: None,
    }
}

fn main() {
    if let Some(gib) = flag("--clone-gib") {
        return clone_bench(gib.parse().expect("--clone-gib G"));
    }
    let rows = rows();
    let dir = tempfile::tempdir().unwrap();
    let mut loser = MariaDb::install(dir.path(), "loser", 1);
    let winner = MariaDb::install(dir.path(), "winner", 2);
    schema(&loser);
    schema(&winner);
    // In slices: the helper bounds each statement to 5 s.
    for first in (1..=rows).step_by(25_000) {
        let last = (first + 24_999).min(rows);
        let fill = format!(
            "INSERT INTO pandora.tagente_datos SELECT seq % 2000, seq * 0.5, {WINDOW_START_S} + seq DIV 2000 FROM pandora.seq_{first}_to_{last}"
        );
        sql(&loser.admin_url(), &[&fill]).unwrap();
    }
    println!("{rows} rows of tagente_datos in the split-brain window on `loser`");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sender, _receiver) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut context = context_for(dir.path(), &loser);
    let plan = MergePlan {
        winner: "winner".into(),
        winner_addr: winner.advertise(),
        fork_gtid: String::new(),
        window_start_unix_ms: WINDOW_START_S * 1000,
    };

    // Merge: gossip-ha, then its re-run (copies nothing), then the manual's dump and load.
    let started = Instant::now();
    let line = runtime
        .block_on(repair::merge(
            &context,
            &plan,
            &mut Progress::new(sender.clone()),
            &stop,
        ))
        .unwrap();
    let merge = started.elapsed();
    assert_eq!(count(&winner), rows);
    println!(
        "gossip-ha merge:   {:>7.2} s, {:>9.0} rows/s  ({line})",
        merge.as_secs_f64(),
        rows as f64 / merge.as_secs_f64()
    );
    let started = Instant::now();
    runtime
        .block_on(repair::merge(
            &context,
            &plan,
            &mut Progress::new(sender.clone()),
            &stop,
        ))
        .unwrap();
    let rerun = started.elapsed();
    assert_eq!(count(&winner), rows, "a second merge copies nothing");
    println!(
        "gossip-ha re-run:  {:>7.2} s, 0 rows copied (every row checked)",
        rerun.as_secs_f64()
    );
    sql(
        &winner.admin_url(),
        &["SET sql_log_bin = 0", "TRUNCATE pandora.tagente_datos"],
    )
    .unwrap();
    let manual = shell(&format!(
        "mariadb-dump {} --no-create-info --skip-add-locks --where='utimestamp >= {WINDOW_START_S}' pandora tagente_datos | mariadb {} pandora",
        client_args(&loser),
        client_args(&winner)
    ));
    assert_eq!(count(&winner), rows);
    println!(
        "manual dump|load: {:>7.2} s, {:>9.0} rows/s  (no duplicate check: run twice, it doubles the rows)",
        manual.as_secs_f64(),
        rows as f64 / manual.as_secs_f64()
    );

    rebuilds(&runtime, dir.path(), &mut context, &mut loser, &winner, rows);
    loser.kill();
}
