//! Real MariaDB servers for tests: `mariadb-install-db` into a temporary directory, own port
//! and socket on loopback, binary log, unique `server_id`, `gtid_strict_mode`, started
//! read-only (as DESIGN §2 asks of DB servers), their users and grants created with the binary
//! log on, as the manual and deploy scripts do (`Setup::AsOperators`: every server starts with
//! GTIDs of its own; `Setup::Clean` for an empty history). Killed on drop; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

pub const ADMIN_USER: &str = "gha";
pub const ADMIN_PASSWORD: &str = "gha-pass";
pub const REPL_USER: &str = "repl";
pub const REPL_PASSWORD: &str = "repl-pass";
pub const APP_USER: &str = "app";
pub const APP_PASSWORD: &str = "app-pass";

/// Fails the test with a clear message when the server binaries are missing: a test that
/// needs MariaDB never passes silently without it.
fn require(binary: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(binary);
        if path.exists() {
            return path;
        }
    }
    panic!("{binary} not found: install mariadb-server (`.ci/run` does) to run the database tests");
}

/// How a server's first transactions came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Users created with the binary log off: an empty history (the lab's convenience).
    Clean,
    /// Users and grants created with the binary log on, as the manual and deploy scripts do:
    /// every server starts with GTIDs of its own (`0-<server id>-1…6`).
    AsOperators,
}

/// Pandora's own definitions of the merged tables and `tconfig` (from `pandoradb.sql`).
pub const PANDORA_TABLES: &str = include_str!("../fixtures/pandora_tables.sql");

pub struct MariaDb {
    pub name: String,
    /// Loopback address it listens on; distinct per server where a test needs to tell them apart.
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
    pub server_id: u32,
    pub binlog: bool,
    /// The network namespace it runs in (a lab host), if any.
    pub netns: Option<String>,
    /// Server options added after the lab's own (a benchmark's production-sized buffers).
    pub extra_args: Vec<String>,
    child: Option<Child>,
}

impl MariaDb {
    /// Installs a fresh data directory and starts the server, read-only, with the test users.
    pub fn install(parent: &Path, name: &str, server_id: u32) -> MariaDb {
        Self::install_with(parent, name, server_id, true)
    }

    /// As `install`; `binlog: false` makes a server "not configured for replication".
    pub fn install_with(parent: &Path, name: &str, server_id: u32, binlog: bool) -> MariaDb {
        Self::install_on(parent, name, server_id, binlog, "127.0.0.1")
    }

    /// As `install_with`, listening on `ip` (a 127.0.0.0/8 address).
    pub fn install_on(parent: &Path, name: &str, server_id: u32, binlog: bool, ip: &str) -> MariaDb {
        Self::install_in(parent, name, server_id, binlog, ip, None)
    }

    /// As `install_on`, inside network namespace `netns` (a lab host at `ip`, in 198.18.0.0/16):
    /// the users are allowed from the lab's addresses.
    pub fn install_in(
        parent: &Path,
        name: &str,
        server_id: u32,
        binlog: bool,
        ip: &str,
        netns: Option<&str>,
    ) -> MariaDb {
        Self::install_set_up(parent, name, server_id, binlog, ip, netns, Setup::AsOperators)
    }

    /// As operators set a server up (`Setup::AsOperators`, as every `install…` does): its users
    /// and grants are transactions of its own in its binary log.
    pub fn install_as_operators(parent: &Path, name: &str, server_id: u32) -> MariaDb {
        Self::install_set_up(parent, name, server_id, true, "127.0.0.1", None, Setup::AsOperators)
    }

    pub fn install_set_up(
        parent: &Path,
        name: &str,
        server_id: u32,
        binlog: bool,
        ip: &str,
        netns: Option<&str>,
        setup: Setup,
    ) -> MariaDb {
        let dir = parent.join(format!("mariadb-{name}"));
        // Each server gets its own tmpdir: parallel installs sharing /tmp collide on temp tables.
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let output = Command::new(require("mariadb-install-db"))
            .args([
                "--no-defaults",
                &format!("--datadir={}", dir.join("data").display()),
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
                &format!("--tmpdir={}", dir.join("tmp").display()),
            ])
            .output()
            .expect("run mariadb-install-db");
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = MariaDb {
            name: name.to_string(),
            ip: ip.to_string(),
            port: super::free_port(),
            dir,
            server_id,
            binlog,
            netns: netns.map(str::to_string),
            extra_args: Vec::new(),
            child: None,
        };
        server.start();
        let from = if netns.is_some() { "198.18.%" } else { "127.0.0.1" };
        let log_bin = match setup {
            Setup::Clean => "SET sql_log_bin = 0",
            Setup::AsOperators => "SET sql_log_bin = 1",
        };
        server.admin(&[
            log_bin,
            &format!("CREATE USER '{ADMIN_USER}'@'{from}' IDENTIFIED BY '{ADMIN_PASSWORD}'"),
            &format!("GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{from}' WITH GRANT OPTION"),
            &format!("CREATE USER '{REPL_USER}'@'{from}' IDENTIFIED BY '{REPL_PASSWORD}'"),
            &format!("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPL_USER}'@'{from}'"),
            &format!("CREATE USER '{APP_USER}'@'{from}' IDENTIFIED BY '{APP_PASSWORD}'"),
            &format!("GRANT ALL ON pandora.* TO '{APP_USER}'@'{from}'"),
        ]);
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// How the agent restarts this server itself (physical resync): detached from the agent,
    /// in the server's namespace, with the same options.
    pub fn start_command(&self) -> Vec<String> {
        let mut argv = vec!["setsid".to_string(), "-f".into()];
        if let Some(netns) = &self.netns {
            argv.extend(["ip".into(), "netns".into(), "exec".into(), netns.clone()]);
        }
        argv.push(require("mariadbd").display().to_string());
        argv.extend(self.server_args());
        argv
    }

    pub fn stop_command(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!("kill $(cat {})", self.dir.join("mysqld.pid").display()),
        ]
    }

    fn server_args(&self) -> Vec<String> {
        let data = self.dir.join("data");
        let mut args = vec![
            "--no-defaults".to_string(),
            "--user=root".into(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", self.socket().display()),
            format!("--port={}", self.port),
            format!("--bind-address={}", self.ip),
            format!("--tmpdir={}", self.dir.join("tmp").display()),
            format!("--pid-file={}", self.dir.join("mysqld.pid").display()),
            format!("--log-error={}", self.dir.join("error.log").display()),
            format!("--server-id={}", self.server_id),
            format!("--relay-log={}", data.join("relay-bin").display()),
            "--read-only=ON".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-log-file-size=8M".into(),
            "--performance-schema=OFF".into(),
            "--max-connections=60".into(),
        ];
        if self.binlog {
            args.extend([
                format!("--log-bin={}", data.join("binlog").display()),
                // What the example server configuration ships: a merge reads exact row images.
                // A test of the manual's MIXED adds `--binlog-format=MIXED` to `extra_args`.
                "--binlog-format=ROW".into(),
                "--binlog-row-image=FULL".into(),
                "--log-slave-updates=ON".into(),
                "--gtid-strict-mode=ON".into(),
            ]);
        }
        // Last: mariadbd takes the last of a repeated option, so these override the lab's own.
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let args = self.server_args();
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(require("mariadbd"));
                command
            }
            None => Command::new(require("mariadbd")),
        };
        let child = command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers() {
            if Instant::now() > deadline {
                panic!(
                    "{} did not start within 30 s; error log:\n{}",
                    self.name,
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        Command::new(require("mariadb"))
            .args([
                &format!("--socket={}", self.socket().display()),
                "-uroot",
                "-e",
                "SELECT 1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Runs statements as the OS root user over the socket (setup only).
    pub fn admin(&self, statements: &[&str]) {
        self.root_client(&["-e", &statements.join(";\n")], None);
    }

    /// Runs a script as the OS root user over the socket, in database `database` (setup only).
    pub fn admin_script(&self, database: &str, script: &str) {
        let args: &[&str] = if database.is_empty() { &[] } else { &[database] };
        self.root_client(args, Some(script));
    }

    /// The `mariadb` client as the OS root user over the socket, fed `script` on stdin; fails
    /// the test with the server's message. Returns what it printed.
    fn root_client(&self, args: &[&str], script: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new(require("mariadb"))
            .arg(format!("--socket={}", self.socket().display()))
            .arg("-uroot")
            .args(args)
            .stdin(if script.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run mariadb");
        if let Some(script) = script {
            // A client that stops at an error closes its input: its message, below, says why.
            let _ = child.stdin.take().unwrap().write_all(script.as_bytes());
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The Pandora database with Pandora's real table definitions, written with the binary
    /// log on (while the server is writable), and `rows` rows of `tagente_datos` and `tevento`
    /// dated from a day back on, as a server that has run for a while holds them.
    pub fn load_pandora(&self, rows: u32) {
        self.admin(&["SET GLOBAL read_only = OFF", "CREATE DATABASE IF NOT EXISTS pandora"]);
        self.admin_script("pandora", PANDORA_TABLES);
        if rows > 0 {
            self.admin_script(
                "pandora",
                &format!(
                    "INSERT INTO tagente_datos (id_agente_modulo, datos, utimestamp) \
                     SELECT seq % 50, seq * 1.5, UNIX_TIMESTAMP() - 86400 + seq FROM seq_1_to_{rows};\n\
                     INSERT INTO tevento (id_agente, evento, utimestamp) \
                     SELECT seq % 50, CONCAT('event ', seq), UNIX_TIMESTAMP() - 86400 + seq FROM seq_1_to_{rows};"
                ),
            );
        }
        self.admin(&["SET GLOBAL read_only = ON"]);
    }

    /// Statements of its own in a scratch database: a server that ran something else.
    pub fn run_scratch(&self, statements: u32) {
        let mut script =
            String::from("CREATE DATABASE scratch; CREATE TABLE scratch.notes (id INT PRIMARY KEY, note TEXT);\n");
        for id in 0..statements.saturating_sub(2) {
            script.push_str(&format!("INSERT INTO scratch.notes VALUES ({id}, 'note {id}');\n"));
        }
        self.admin(&["SET GLOBAL read_only = OFF"]);
        self.admin_script("", &script);
        self.admin(&["SET GLOBAL read_only = ON"]);
    }

    /// Rotates the binary log and purges every earlier one, as `binlog_expire_logs_seconds`
    /// does on a primary that has run for days.
    pub fn purge_binlogs(&self) {
        self.admin(&["FLUSH BINARY LOGS"]);
        let current = self.query_root("SHOW MASTER STATUS");
        let file = current.split_whitespace().next().unwrap_or_default().to_string();
        assert!(!file.is_empty(), "{}: no binary log to purge to", self.name);
        // MariaDB keeps a log InnoDB may still need for crash recovery (until its checkpoint):
        // PURGE then skips it with a warning, so it is asked again until the log is gone.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.admin(&[&format!("PURGE BINARY LOGS TO '{file}'")]);
            if self.query_root("SHOW BINARY LOGS").starts_with(&file) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: the logs before {file} were never purged",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The first row of `statement`, tab-separated, as the OS root user (setup only).
    pub fn query_root(&self, statement: &str) -> String {
        let printed = self.root_client(&["--batch", "--skip-column-names", "-e", statement], None);
        printed.lines().next().unwrap_or_default().to_string()
    }

    /// SIGKILL: the server dies as in a crash. A server the agent restarted itself (physical
    /// resync) is found by its pid file.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let pid = std::fs::read_to_string(self.dir.join("mysqld.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "mariadbd" {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }

    /// Stops the server and starts it again with `extra` server options (a benchmark's
    /// production-sized buffers); the data stays.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.admin(&["SHUTDOWN"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.extra_args = extra.iter().map(|arg| arg.to_string()).collect();
        self.start();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    pub fn advertise(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    // Clients on loopback connect from 127.0.0.1 whatever 127/8 address they reach, which is
    // where the test users are allowed from.
    pub fn admin_url(&self) -> String {
        format!("mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@{}:{}/", self.ip, self.port)
    }

    pub fn app_url(&self) -> String {
        format!("mysql://{APP_USER}:{APP_PASSWORD}@{}:{}/", self.ip, self.port)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `statements` over a fresh connection to `url`, bounded by 5 s; the rows of the last one
/// come back as text. `Err` carries the server's message (e.g. read-only refusals).
pub fn sql(url: &str, statements: &[&str]) -> Result<Vec<Vec<Option<String>>>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let work = async {
            let opts = mysql_async::Opts::from_url(url).map_err(|err| err.to_string())?;
            let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
            let mut conn = mysql_async::Conn::new(opts).await.map_err(|err| err.to_string())?;
            let mut rows = Vec::new();
            for statement in statements {
                let result: Vec<mysql_async::Row> = conn.query(*statement).await.map_err(|err| err.to_string())?;
                rows = result
                    .into_iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|index| row.get::<Option<String>, _>(index).flatten())
                            .collect()
                    })
                    .collect();
            }
            let _ = conn.disconnect().await;
            Ok(rows)
        };
        tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .unwrap_or_else(|_| Err(format!("{url}: no answer within 5 s")))
    })
}

pub fn scalar(url: &str, statement: &str) -> Option<String> {
    sql(url, &[statement]).ok()?.into_iter().next()?.into_iter().next()?
}
