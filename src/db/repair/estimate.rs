//! What a rebuild's progress lines may honestly say. Neither copy's size is known before it
//! ends: a dump's text is not the tables' size on disk (small tables fill a 16 KiB page each,
//! numbers are longer as text), and a physical backup carries files no table size counts. So a
//! logical copy reports the source's tables it has finished (counted from the dump's own
//! markers, weighted by their estimated size) and never a total; a physical copy compares the
//! bytes received with the source's file sizes, says "about", and stops naming that total once
//! the copy has passed it. No ETA before a tenth of the copy and a few seconds; no share of 100 %
//! before the end. Pure: the caller passes the time spent copying.

use std::collections::HashMap;
use std::time::Duration;

/// An ETA from less than this share of the copy, or from its first seconds, is noise.
const ETA_MIN_SHARE: f64 = 0.1;
const ETA_MIN_COPYING: Duration = Duration::from_secs(3);
const RATE_MIN_COPYING: Duration = Duration::from_secs(1);
/// The start of a dump line kept to recognise a marker; data lines are far longer.
const MARKER_PREFIX_BYTES: usize = 512;

const CURRENT_DATABASE: &str = "-- Current Database: ";
const TABLE_STRUCTURE: &str = "-- Table structure for table ";

/// "512 KiB", "3.4 MiB", "1.25 GiB" (the next unit from 1,000 of one: never "1024 KiB").
pub fn size_text(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let bytes = bytes as f64;
    if bytes < 1000.0 * KIB {
        format!("{:.0} KiB", bytes / KIB)
    } else if bytes < 1000.0 * KIB * KIB {
        format!("{:.1} MiB", bytes / (KIB * KIB))
    } else {
        format!("{:.2} GiB", bytes / (KIB * KIB * KIB))
    }
}

/// ", 8.1 MiB/s"; nothing in the first second, whose rate is the first chunk's, not the copy's.
fn per_second(bytes: u64, copying: Duration) -> String {
    if copying < RATE_MIN_COPYING {
        return String::new();
    }
    let rate = bytes as f64 / copying.as_secs_f64();
    format!(", {}/s", size_text(rate as u64))
}

/// Seconds left at the pace so far, once `share` (0–1) and the time spent say enough.
fn eta_seconds(share: f64, copying: Duration) -> Option<u64> {
    if !(ETA_MIN_SHARE..1.0).contains(&share) || copying < ETA_MIN_COPYING {
        return None;
    }
    Some((copying.as_secs_f64() * (1.0 - share) / share).ceil() as u64)
}

/// A share shown while the copy runs: at most 99 %, 100 % belongs to the final line.
fn percent_while_running(share: f64) -> u64 {
    ((share * 100.0).floor() as u64).min(99)
}

/// "resync from db2 (physical): 12.0 MiB received, 8.1 MiB/s, about 40 % of about 30.0 MiB
/// (ETA about 3 s)". `about_total` is estimated from the source's files (none when it could not
/// be read); once the copy passes it, the line says so instead of naming a wrong total.
pub fn physical_line(label: &str, received: u64, about_total: Option<u64>, copying: Duration) -> String {
    let head = format!(
        "{label}: {} received{}",
        size_text(received),
        per_second(received, copying)
    );
    match about_total {
        Some(total) if received < total => {
            let share = received as f64 / total as f64;
            let eta = eta_seconds(share, copying)
                .map(|seconds| format!(" (ETA about {seconds} s)"))
                .unwrap_or_default();
            format!(
                "{head}, about {} % of about {}{eta}",
                percent_while_running(share),
                size_text(total)
            )
        }
        Some(total) => format!(
            "{head}, more than the {} estimated from the source's files",
            size_text(total)
        ),
        None => head,
    }
}

/// Which of the source's tables a logical dump has finished, read from the markers
/// `mariadb-dump` writes before each database and each table (data never holds a raw newline,
/// so a marker is always a line of its own).
#[derive(Debug, Clone, Default)]
pub struct DumpTables {
    /// Estimated bytes of each table to dump, by (database, table).
    sizes: HashMap<(String, String), u64>,
    total_size: u64,
    done_size: u64,
    done: usize,
    database: String,
    current: Option<(String, String)>,
    /// The start of the line being read (bounded).
    line: Vec<u8>,
    finished: bool,
}

impl DumpTables {
    /// `tables`: every table the dump will hold (views are not tables) with its size estimate.
    pub fn new(tables: impl IntoIterator<Item = (String, String, u64)>) -> Self {
        let sizes: HashMap<(String, String), u64> = tables
            .into_iter()
            .map(|(database, table, size)| ((database, table), size))
            .collect();
        DumpTables {
            total_size: sizes.values().sum(),
            sizes,
            ..Default::default()
        }
    }

    /// Reads the next bytes of the dump.
    pub fn feed(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|byte| *byte == b'\n') {
            let room = MARKER_PREFIX_BYTES.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                let line = std::mem::take(&mut self.line);
                self.marker(&String::from_utf8_lossy(&line));
            }
        }
    }

    fn marker(&mut self, line: &str) {
        if let Some(name) = line.strip_prefix(CURRENT_DATABASE).and_then(quoted_name) {
            self.database = name;
        } else if let Some(name) = line.strip_prefix(TABLE_STRUCTURE).and_then(quoted_name) {
            self.finish_current();
            self.current = Some((self.database.clone(), name));
        }
    }

    fn finish_current(&mut self) {
        if let Some(table) = self.current.take() {
            self.done += 1;
            self.done_size += self.sizes.get(&table).copied().unwrap_or(0);
        }
    }

    /// The dump ended whole: its last table is done too.
    pub fn end(&mut self) {
        self.finish_current();
        self.finished = true;
    }

    /// Tables finished, of how many.
    pub fn tables_done(&self) -> (usize, usize) {
        (self.done.min(self.sizes.len()), self.sizes.len())
    }

    /// Share (0–1) of the tables finished, weighted by their estimated size (by their number
    /// when no size is known).
    pub fn share(&self) -> f64 {
        let (done, count) = self.tables_done();
        let share = if self.total_size > 0 {
            self.done_size as f64 / self.total_size as f64
        } else if count > 0 {
            done as f64 / count as f64
        } else {
            0.0
        };
        share.min(1.0)
    }

    /// "resync from db2: 1.2 MiB copied, 0.8 MiB/s, 3 of 5 tables done, about 40 % by their
    /// estimated size (ETA about 5 s)".
    pub fn line(&self, label: &str, copied: u64, copying: Duration) -> String {
        let (done, count) = self.tables_done();
        let share = self.share();
        let eta = eta_seconds(share, copying)
            .map(|seconds| format!(" (ETA about {seconds} s)"))
            .unwrap_or_default();
        let percent = if self.finished {
            100
        } else {
            percent_while_running(share)
        };
        format!(
            "{label}: {} copied{}, {done} of {count} tables done, about {percent} % by their estimated size{eta}",
            size_text(copied),
            per_second(copied, copying)
        )
    }
}

/// "`name`" (backticks doubled inside) → "name".
fn quoted_name(rest: &str) -> Option<String> {
    let rest = rest.trim_end().strip_prefix('`')?.strip_suffix('`')?;
    Some(rest.replace("``", "`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1_048_576;

    #[test]
    fn sizes_are_in_the_unit_that_reads_best() {
        assert_eq!(size_text(39_069), "38 KiB");
        assert_eq!(size_text(7 * MIB + MIB / 2), "7.5 MiB");
        assert_eq!(size_text(5 * 1024 * MIB / 4), "1.25 GiB");
        assert_eq!(size_text(MIB - 1), "1.0 MiB");
    }

    #[test]
    fn a_physical_copy_shows_about_a_share_an_eta_only_once_it_can_and_never_a_total_it_passed() {
        let cases: &[(u64, Option<u64>, u64, &str)] = &[
            (0, Some(10 * MIB), 0, "x: 0 KiB received, about 0 % of about 10.0 MiB"),
            // 5 % after 10 s: too little to say when it ends.
            (
                MIB / 2,
                Some(10 * MIB),
                10,
                "x: 512 KiB received, 51 KiB/s, about 5 % of about 10.0 MiB",
            ),
            // 40 % but in the first second: no ETA either.
            (
                4 * MIB,
                Some(10 * MIB),
                1,
                "x: 4.0 MiB received, 4.0 MiB/s, about 40 % of about 10.0 MiB",
            ),
            (
                4 * MIB,
                Some(10 * MIB),
                4,
                "x: 4.0 MiB received, 1.0 MiB/s, about 40 % of about 10.0 MiB (ETA about 6 s)",
            ),
            // Just short of the estimate: 99 %, never 100 % before the end.
            (
                10 * MIB - 1,
                Some(10 * MIB),
                10,
                "x: 10.0 MiB received, 1.0 MiB/s, about 99 % of about 10.0 MiB (ETA about 1 s)",
            ),
            (
                12 * MIB,
                Some(10 * MIB),
                4,
                "x: 12.0 MiB received, 3.0 MiB/s, more than the 10.0 MiB estimated from the source's files",
            ),
            (4 * MIB, None, 4, "x: 4.0 MiB received, 1.0 MiB/s"),
        ];
        for &(received, total, seconds, expected) in cases {
            let line = physical_line("x", received, total, Duration::from_secs(seconds));
            assert_eq!(line, expected);
        }
    }

    fn dump(tables: &[(&str, &str)]) -> String {
        let mut text = String::from("-- MariaDB dump 10.19\n");
        let mut database = "";
        for (db, table) in tables {
            if *db != database {
                database = db;
                text.push_str(&format!(
                    "--\n-- Current Database: `{db}`\n--\n\nCREATE DATABASE `{db}`;\n"
                ));
            }
            text.push_str(&format!(
                "\n--\n-- Table structure for table `{}`\n--\n\nCREATE TABLE `{}` (id INT);\n\n--\n-- Dumping data for table `{}`\n--\n\nINSERT INTO `{}` VALUES (1),(2),('-- Table structure for table `fake`');\n",
                table.replace('`', "``"),
                table,
                table,
                table
            ));
        }
        text.push_str("-- Dump completed\n");
        text
    }

    #[test]
    fn a_dump_is_followed_by_its_finished_tables_weighted_by_their_size_whatever_the_chunks() {
        let text = dump(&[
            ("pandora", "small"),
            ("pandora", "big"),
            ("pandora", "odd`name"),
            ("other", "small"),
        ]);
        let sizes = [
            ("pandora", "small", 10),
            ("pandora", "big", 80),
            ("pandora", "odd`name", 0),
            ("other", "small", 10),
        ]
        .map(|(db, table, size)| (db.to_string(), table.to_string(), size));
        for chunk in [1, 7, 64, text.len()] {
            let mut tables = DumpTables::new(sizes.clone());
            let mut shares = Vec::new();
            for piece in text.as_bytes().chunks(chunk) {
                tables.feed(piece);
                shares.push(tables.share());
            }
            assert!(shares.windows(2).all(|pair| pair[0] <= pair[1]), "monotone: {shares:?}");
            // The last table is done only when the dump ends.
            assert_eq!(tables.tables_done(), (3, 4), "chunks of {chunk}");
            assert!((tables.share() - 0.9).abs() < 1e-9, "{}", tables.share());
            let running = tables.line("x", 4 * MIB, Duration::from_secs(4));
            assert_eq!(
                running,
                "x: 4.0 MiB copied, 1.0 MiB/s, 3 of 4 tables done, about 90 % by their estimated size (ETA about 1 s)"
            );
            tables.end();
            assert_eq!(tables.tables_done(), (4, 4));
            assert!(tables
                .line("x", 4 * MIB, Duration::from_secs(4))
                .contains("4 of 4 tables done, about 100 %"));
        }
    }

    #[test]
    fn a_dump_share_stays_below_100_before_the_end_and_counts_tables_when_no_size_is_known() {
        let text = dump(&[("db", "a"), ("db", "b")]);
        let mut tables = DumpTables::new([("db", "a", 0), ("db", "b", 0)].map(|(d, t, s)| (d.into(), t.into(), s)));
        tables.feed(text.as_bytes());
        assert_eq!(tables.share(), 0.5);
        // More tables in the dump than announced (one created meanwhile): never over 100 %.
        let mut fewer = DumpTables::new([("db".to_string(), "a".to_string(), 5)]);
        fewer.feed(text.as_bytes());
        fewer.feed(dump(&[("db", "c")]).as_bytes());
        assert_eq!(fewer.tables_done(), (1, 1));
        assert!(fewer.line("x", MIB, Duration::from_secs(10)).contains("about 99 %"));
        // The first chunk's rate is not the copy's.
        assert_eq!(
            fewer.line("x", 2048, Duration::from_millis(1)),
            "x: 2 KiB copied, 1 of 1 tables done, about 99 % by their estimated size"
        );
        assert_eq!(DumpTables::new([]).share(), 0.0);
    }
}
