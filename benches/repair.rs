//! Split-brain repair against real MariaDB servers (issues #7 and #13's measurements):
//!
//!     cargo bench --bench repair -- [--rows N[,N…]]
//!     cargo bench --bench repair -- --clone-gib G
//!
//! For each N, on fresh servers (both stopped for good and their directory removed before the
//! next N, also when a panic unwinds): `loser` and `winner` on loopback, with production-sized
//! buffers, logging ROW events with full row images (the harness's default). Both hold Pandora's
//! real tables and the same history of `tagente_datos`; then, after the fork (`loser`'s
//! `@@gtid_binlog_pos`), `loser` writes N rows as divergent transactions of multi-row INSERTs
//! (some dated an hour and a day before the window start: agents deliver buffered data late)
//! and `winner` rows of its own agents. Measured: gossip-ha's merge from that fork, its re-run
//! (copies nothing), and the manual's `mariadb-dump --where … | mariadb` into the same winner
//! state; then gossip-ha's logical and physical (mariabackup over the mutual-TLS transfer
//! channel) rebuilds of `loser` from `winner` against a plain `mariabackup` to disk + copy +
//! prepare. A table of the merges, one line per N, ends the run. With `--clone-gib G`: a new,
//! empty server cloned from a primary holding G GiB of `tagente_datos`, the same three ways.

#[path = "../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mariadb::{scalar, MariaDb, Setup};
use gossip_ha::config::MergeTable;
use gossip_ha::core::db::{MergePlan, SaveFirst};
use gossip_ha::db::repair::{self, PhysicalSetup, Progress, RepairContext};
use gossip_ha::tls::identity::{IdentityHandle, TlsFiles, TlsIdentity};
use gossip_ha_proto::gossip::Role;
use mysql_async::prelude::Queryable;

const WINDOW_START_S: u64 = 1_800_000_000;
const HOUR_S: u64 = 3_600;
const DAY_S: u64 = 86_400;
/// Every module reports a value every 5 minutes.
const INTERVAL_S: u64 = 300;
/// Modules whose agents reach `loser` during the split (ids 1…); `winner`'s agents' come after.
const LOSER_MODULES: u64 = 3_000;
const WINNER_MODULES: u64 = 1_000;
/// The history both servers hold ends two days before the window: older than every late row, so
/// the manual's `--where` (from the oldest divergent row) selects divergent rows only.
const HISTORY_END_S: u64 = WINDOW_START_S - 2 * DAY_S;
/// `loser`'s divergent rows go in as transactions of INSERTs of this many rows each.
const ROWS_PER_INSERT: u64 = 500;
const INSERTS_PER_TRANSACTION: u64 = 4;
/// Bounds each statement of the fill (the harness's `sql` allows 5 s, too little at millions
/// of rows for a cold server).
const FILL_STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Production-sized buffers, as a primary holding gigabytes runs with.
const PRODUCTION_BUFFERS: [&str; 3] = [
    "--innodb-buffer-pool-size=2G",
    "--innodb-log-file-size=1G",
    "--max-allowed-packet=64M",
];

/// The value after `--name` on the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|index| args.get(index + 1))
        .cloned()
}

/// `--rows 200000,1000000`: the sizes, each run on fresh servers.
fn sizes() -> Vec<u64> {
    let sizes: Vec<u64> = flag("--rows")
        .unwrap_or_else(|| "200000".into())
        .split(',')
        .map(|size| size.trim().parse().expect("--rows N[,N…]"))
        .collect();
    for &rows in &sizes {
        // Below this, every (module, utimestamp) of `divergent_row` is distinct and its late
        // rows stay newer than the shared history.
        assert!(
            rows > 0 && rows / LOSER_MODULES < 80_000,
            "--rows: {rows} is out of range"
        );
    }
    sizes
}

/// Two servers in a directory of their own. Dropping it (also while a panic unwinds) stops
/// both for good, waits until their processes are gone and removes the directory.
struct Servers {
    loser: MariaDb,
    winner: MariaDb,
    dir: tempfile::TempDir,
}

impl Servers {
    fn merge_pair() -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let loser = MariaDb::install(dir.path(), "loser", 1);
        let winner = MariaDb::install(dir.path(), "winner", 2);
        let mut servers = Servers { loser, winner, dir };
        servers.loser.restart_with(&PRODUCTION_BUFFERS);
        servers.winner.restart_with(&PRODUCTION_BUFFERS);
        servers
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        stop(&mut self.loser);
        stop(&mut self.winner);
        // A safety net: with `stop_and_wait` in the physical resync, it finds nothing.
        for pid in processes_under(self.dir.path()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            eprintln!(
                "warning: process {pid} still ran under {}; killed: {}",
                self.dir.path().display(),
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            );
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            reap(pid);
        }
    }
}

/// SIGKILL (the harness's own child, and a server the physical resync started again, found by
/// its pid file), then waits until the process is gone.
fn stop(server: &mut MariaDb) {
    let pid = std::fs::read_to_string(server.dir.join("mysqld.pid"))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok());
    server.kill();
    if let Some(pid) = pid {
        reap(pid);
    }
}

/// Waits (bounded) until `pid` has exited. A server the physical resync started detached
/// (`setsid -f`) is this process's child, since `main` makes it a subreaper: it is reaped here
/// instead of lingering as a zombie; any other pid is gone when /proc no longer shows it alive.
fn reap(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) => return,
            Err(_) if !alive(pid) => return,
            Err(_) => {}
        }
        if Instant::now() > deadline {
            eprintln!("warning: process {pid} did not exit within 30 s of SIGKILL");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Running (not a zombie) according to /proc/<pid>/stat.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Live processes (other than this one) whose command line names `dir`.
fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != own && alive(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// How the physical resync stops `server`: as `systemctl stop` does, it returns once the process
/// has exited. The harness's `stop_command` returns right after the signal: the resync, seeing
/// the server no longer answer, started the new one while the old one was still shutting down
/// (seconds with production buffers), and the old one, exiting last, deleted the pid file the
/// new one had written (MariaDB deletes it whatever pid it holds), so nothing found the new
/// server to kill it: the mariadbd the clone bench left running. The old server is the
/// harness's child, a zombie until reaped, hence the state test rather than `kill -0`.
fn stop_and_wait(server: &MariaDb) -> Vec<String> {
    let pid_file = server.dir.join("mysqld.pid");
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "pid=$(cat {}) && kill $pid && while state=$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null) && [ \"$state\" != Z ]; do sleep 0.1; done",
            pid_file.display()
        ),
    ]
}

/// Over the socket and without the 5-s bound of `sql`: counting gigabytes on a server that
/// just started cold takes longer.
fn count(db: &MariaDb) -> u64 {
    count_table(db, "pandora.tagente_datos")
}

fn count_table(db: &MariaDb, table: &str) -> u64 {
    db.query_root(&format!("SELECT COUNT(*) FROM {table}"))
        .parse()
        .unwrap_or(0)
}

/// The rows of `table` as a multiset: their count and the sum of a checksum of each row.
fn fingerprint(db: &MariaDb, table: &str) -> String {
    db.query_root(&format!(
        "SELECT COUNT(*), SUM(CRC32(CONCAT_WS(',', id_agente_modulo, datos, utimestamp))) FROM {table}"
    ))
}

/// `command` under bash with `pipefail`: a failing `mariadb-dump` fails its pipe too.
fn shell(command: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-o", "pipefail", "-c", command])
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

/// `rows` rows of `tagente_datos` both servers hold from before the split (written on each,
/// in its binary log before the fork): every module of both sides, every 5 minutes, ending two
/// days before the window. Generated by the server, 100,000 rows a transaction.
fn history(db: &MariaDb, rows: u64) {
    let modules = LOSER_MODULES + WINNER_MODULES;
    let mut script = String::new();
    for first in (0..rows).step_by(100_000) {
        let last = (first + 99_999).min(rows - 1);
        script.push_str(&format!(
            "INSERT INTO tagente_datos (id_agente_modulo, datos, utimestamp) \
             SELECT 1 + seq % {modules}, (seq * 7919) % 1000000 / 100, \
             {HISTORY_END_S} - seq DIV {modules} * {INTERVAL_S} - (1 + seq % {modules}) % {INTERVAL_S} \
             FROM seq_{first}_to_{last};\n"
        ));
    }
    db.admin_script("pandora", &script);
}

/// `rows` rows `winner`'s own agents (other modules than `loser`'s) delivered to it during the
/// split, in the window.
fn winner_rows(db: &MariaDb, rows: u64) {
    let first_module = LOSER_MODULES + 1;
    let mut script = String::new();
    for first in (0..rows).step_by(100_000) {
        let last = (first + 99_999).min(rows - 1);
        script.push_str(&format!(
            "INSERT INTO tagente_datos (id_agente_modulo, datos, utimestamp) \
             SELECT {first_module} + seq % {WINNER_MODULES}, (seq * 104729) % 1000000 / 100, \
             {WINDOW_START_S} + seq DIV {WINNER_MODULES} * {INTERVAL_S} + ({first_module} + seq % {WINNER_MODULES}) % {INTERVAL_S} \
             FROM seq_{first}_to_{last};\n"
        ));
    }
    db.admin_script("pandora", &script);
}

/// xorshift64*: the same "random" values on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dated {
    InWindow,
    HourLate,
    DayLate,
}

/// Row `i` of `loser`'s divergent rows, drawn from `random`: module `1 + i % LOSER_MODULES`'s
/// `i / LOSER_MODULES`-th value (0.00 to 9999.99), dated in the window every 5 minutes, or, for
/// one row in a hundred, a day before the window start and, for two, an hour before (buffered
/// data delivered late). No two rows share (module, utimestamp), so none equals another in
/// every column.
fn divergent_row(i: u64, random: u64) -> (u64, f64, u64, Dated) {
    let module = 1 + i % LOSER_MODULES;
    let slot = i / LOSER_MODULES;
    let datos = (random % 1_000_000) as f64 / 100.0;
    let (utimestamp, dated) = match (random >> 32) % 100 {
        0 => (WINDOW_START_S - DAY_S - 1 - slot, Dated::DayLate),
        1 | 2 => (WINDOW_START_S - HOUR_S - 1 - slot, Dated::HourLate),
        _ => (
            WINDOW_START_S + slot * INTERVAL_S + module % INTERVAL_S,
            Dated::InWindow,
        ),
    };
    (module, datos, utimestamp, dated)
}

/// What the fill wrote: the oldest utimestamp and how many rows came late.
struct Filled {
    oldest: u64,
    hour_late: u64,
    day_late: u64,
}

impl Filled {
    fn late(&self) -> u64 {
        self.hour_late + self.day_late
    }
}

/// One statement of the fill within `FILL_STATEMENT_TIMEOUT`.
async fn bounded<T>(what: &str, work: impl Future<Output = Result<T, mysql_async::Error>>) -> T {
    match tokio::time::timeout(FILL_STATEMENT_TIMEOUT, work).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("fill: {what}: {err}"),
        Err(_) => panic!("fill: {what}: no answer within {} s", FILL_STATEMENT_TIMEOUT.as_secs()),
    }
}

/// `rows` divergent rows into `db`'s `tagente_datos` over one connection, as transactions of
/// multi-row INSERTs (each statement bounded); progress every 5 s.
async fn fill(db: &MariaDb, rows: u64) -> Filled {
    let opts = mysql_async::Opts::from_url(&db.admin_url()).unwrap();
    let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
    let mut conn = bounded("connect", mysql_async::Conn::new(opts)).await;
    let mut random = Rng(0x9E37_79B9_7F4A_7C15);
    let mut filled = Filled {
        oldest: u64::MAX,
        hour_late: 0,
        day_late: 0,
    };
    let started = Instant::now();
    let mut reported = started;
    let mut row = 0;
    while row < rows {
        bounded("BEGIN", conn.query_drop("BEGIN")).await;
        for _ in 0..INSERTS_PER_TRANSACTION {
            let end = (row + ROWS_PER_INSERT).min(rows);
            if row == end {
                break;
            }
            let mut values = Vec::with_capacity((end - row) as usize);
            for i in row..end {
                let (module, datos, utimestamp, dated) = divergent_row(i, random.next());
                filled.oldest = filled.oldest.min(utimestamp);
                match dated {
                    Dated::InWindow => {}
                    Dated::HourLate => filled.hour_late += 1,
                    Dated::DayLate => filled.day_late += 1,
                }
                values.push(format!("({module},{datos},{utimestamp})"));
            }
            let insert = format!(
                "INSERT INTO pandora.tagente_datos (id_agente_modulo, datos, utimestamp) VALUES {}",
                values.join(",")
            );
            bounded("INSERT", conn.query_drop(insert)).await;
            row = end;
        }
        bounded("COMMIT", conn.query_drop("COMMIT")).await;
        if reported.elapsed() >= Duration::from_secs(5) && row < rows {
            reported = Instant::now();
            println!(
                "  filling `loser`: {row} of {rows} rows ({:.0} %, {:.0} rows/s)",
                100.0 * row as f64 / rows as f64,
                row as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let _ = conn.disconnect().await;
    let took = started.elapsed().as_secs_f64();
    println!(
        "`loser` filled with {rows} divergent rows in {took:.1} s ({:.0} rows/s, {} transactions of {} rows): \
         {} dated a day and {} an hour before the window start",
        rows as f64 / took,
        rows.div_ceil(ROWS_PER_INSERT * INSERTS_PER_TRANSACTION),
        ROWS_PER_INSERT * INSERTS_PER_TRANSACTION,
        filled.day_late,
        filled.hour_late
    );
    filled
}

fn identity(dir: &Path, name: &str) -> TlsIdentity {
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
    dir: &Path,
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
        stop_command: stop_and_wait(loser),
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
    let loser = MariaDb::install_set_up(dir.path(), "new", 1, true, "127.0.0.1", None, Setup::Clean);
    let winner = MariaDb::install_as_operators(dir.path(), "primary", 2);
    let mut servers = Servers { loser, winner, dir };
    servers.loser.restart_with(&PRODUCTION_BUFFERS);
    servers.winner.restart_with(&PRODUCTION_BUFFERS);
    let winner = &servers.winner;
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
    let mut context = context_for(servers.dir.path(), &servers.loser);
    rebuilds(
        &runtime,
        servers.dir.path(),
        &mut context,
        &mut servers.loser,
        &servers.winner,
        rows,
    );
}

fn context_for(dir: &Path, loser: &MariaDb) -> RepairContext {
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

/// One size's merge measurements, for the closing table.
struct Measured {
    rows: u64,
    /// What gossip-ha's merge copied (`rows`, or fewer when it left the late rows out).
    copied: u64,
    late: u64,
    merge: Duration,
    rerun: Duration,
    manual: Duration,
}

/// The merge of `rows` divergent rows, on fresh servers (stopped and removed on return or
/// panic), then the rebuilds.
fn merge_bench(rows: u64) -> Measured {
    println!("\n## {rows} divergent rows");
    let servers = Servers::merge_pair();
    let dir: PathBuf = servers.dir.path().to_path_buf();
    let measured = merge_on(servers, rows);
    let left = processes_under(&dir);
    assert!(left.is_empty(), "processes left under {}: {left:?}", dir.display());
    assert!(!dir.exists(), "{} was not removed", dir.display());
    println!("both servers stopped, {} removed", dir.display());
    measured
}

fn merge_on(mut servers: Servers, rows: u64) -> Measured {
    let started = Instant::now();
    // Pandora's real tables and the same history on both, written to each one's binary log.
    for server in [&servers.loser, &servers.winner] {
        server.load_pandora(0);
        history(server, rows);
    }
    let fork = servers.loser.query_root("SELECT @@gtid_binlog_pos");
    winner_rows(&servers.winner, rows / 10);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let filled = runtime.block_on(fill(&servers.loser, rows));
    let late = filled.late();
    let (loser, winner) = (&servers.loser, &servers.winner);
    let winner_before = count(winner);
    assert_eq!(
        count(loser),
        rows + rows,
        "`loser` holds the history and its divergent rows"
    );
    println!(
        "`loser` forked at GTID {fork} and is now at {}; `winner` holds {winner_before} rows ({rows} of history, {} of its own agents'); set up in {:.0} s",
        loser.query_root("SELECT @@gtid_binlog_pos"),
        rows / 10,
        started.elapsed().as_secs_f64()
    );
    // The winner's state before any merge, for the manual procedure to start from too.
    winner.admin(&[
        "SET sql_log_bin = 0",
        "CREATE DATABASE bench",
        "CREATE TABLE bench.tagente_datos LIKE pandora.tagente_datos",
        "INSERT INTO bench.tagente_datos SELECT * FROM pandora.tagente_datos",
    ]);

    let (sender, _receiver) = tokio::sync::mpsc::channel(1024);
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut context = context_for(servers.dir.path(), loser);
    let plan = MergePlan {
        winner: "winner".into(),
        winner_addr: winner.advertise(),
        fork_gtid: fork,
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
    let merged = count(winner);
    let copied = merged
        .checked_sub(winner_before)
        .expect("the merge removed rows from `winner`");
    // Exactly the divergent rows; a merge by time window (before #13) leaves out exactly the
    // late ones, dated before the window start.
    assert!(
        copied == rows || copied == rows - late,
        "gossip-ha's merge copied {copied} of {rows} rows ({late} of them late)"
    );
    println!(
        "gossip-ha merge:  {:>7.2} s, {:>9.0} rows/s  ({})",
        merge.as_secs_f64(),
        copied as f64 / merge.as_secs_f64(),
        line.summary
    );
    if copied < rows {
        println!(
            "  ! gossip-ha left out the {late} late rows ({} a day, {} an hour before the window start): it merges by time window",
            filled.day_late, filled.hour_late
        );
    }
    let started = Instant::now();
    let line = runtime
        .block_on(repair::merge(
            &context,
            &plan,
            &mut Progress::new(sender.clone()),
            &stop,
        ))
        .unwrap();
    let rerun = started.elapsed();
    assert_eq!(count(winner), merged, "a second merge copies nothing");
    println!(
        "gossip-ha re-run: {:>7.2} s, 0 rows copied  ({})",
        rerun.as_secs_f64(),
        line.summary
    );

    // The manual into the winner's state before the merge: gossip-ha's result set aside.
    winner.admin(&[
        "SET sql_log_bin = 0",
        "RENAME TABLE pandora.tagente_datos TO bench.merged, bench.tagente_datos TO pandora.tagente_datos",
    ]);
    assert_eq!(count(winner), winner_before);
    // The manual selects the split's rows by time. Its `--where` starts at the oldest of
    // `loser`'s divergent rows, the late ones included: what an operator who knew of them would
    // write (from the window start it would miss them). The shared history is older still, so
    // it selects exactly the divergent rows and the comparison is fair.
    let manual = shell(&format!(
        "mariadb-dump {} --no-create-info --skip-add-locks --where='utimestamp >= {}' pandora tagente_datos | mariadb {} pandora",
        client_args(loser),
        filled.oldest,
        client_args(winner)
    ));
    assert_eq!(
        count(winner),
        winner_before + rows,
        "the manual copies every divergent row"
    );
    println!(
        "manual dump|load: {:>7.2} s, {:>9.0} rows/s  (--where 'utimestamp >= {}', the oldest divergent row; no duplicate check: run twice, it doubles the rows)",
        manual.as_secs_f64(),
        rows as f64 / manual.as_secs_f64(),
        filled.oldest
    );
    if copied == rows {
        assert_eq!(
            fingerprint(winner, "bench.merged"),
            fingerprint(winner, "pandora.tagente_datos"),
            "gossip-ha's merge and the manual leave the winner with the same rows"
        );
        println!("both leave `winner` with the same {} rows", winner_before + rows);
    } else {
        assert_eq!(count_table(winner, "bench.merged"), winner_before + rows - late);
    }
    // Fresh statistics: the rebuilds size their copy by the tables' length.
    winner.admin(&[
        "SET sql_log_bin = 0",
        "DROP DATABASE bench",
        "ANALYZE TABLE pandora.tagente_datos",
    ]);

    let total = count(winner);
    rebuilds(
        &runtime,
        servers.dir.path(),
        &mut context,
        &mut servers.loser,
        &servers.winner,
        total,
    );
    Measured {
        rows,
        copied,
        late,
        merge,
        rerun,
        manual,
    }
}

/// The closing table: one line per size.
fn table(results: &[Measured]) {
    println!("\n| rows | gossip-ha merge s | rows/s | re-run s | manual s | rows/s | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let (merge, manual) = (m.merge.as_secs_f64(), m.manual.as_secs_f64());
        let mark = if m.copied < m.rows { " *" } else { "" };
        println!(
            "| {}{mark} | {merge:.2} | {:.0} | {:.2} | {manual:.2} | {:.0} | {:.2} |",
            m.rows,
            m.copied as f64 / merge,
            m.rerun.as_secs_f64(),
            m.rows as f64 / manual,
            merge / manual
        );
    }
    println!(
        "\nratio: gossip-ha's merge time over the manual's. gossip-ha's time includes saving `loser`'s \
         binary log from the fork; its rows/s counts the rows it copied."
    );
    for m in results.iter().filter(|m| m.copied < m.rows) {
        println!(
            "* gossip-ha copied {} of {} rows: it left out the {} dated before the window start",
            m.copied, m.rows, m.late
        );
    }
}

fn main() {
    // A server the physical resync starts again (`setsid -f mariadbd`) outlives its parent and
    // is re-parented to this process instead of init: killed, it is reaped here (`reap`), not
    // left behind as a zombie that init may never collect.
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    if let Some(gib) = flag("--clone-gib") {
        return clone_bench(gib.parse().expect("--clone-gib G"));
    }
    let results: Vec<Measured> = sizes().into_iter().map(merge_bench).collect();
    table(&results);
}
