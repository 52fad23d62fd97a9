//! The binary log settings a split-brain merge depends on. The merge reads the loser's ROW
//! events to copy the rows it took exactly; a statement event carries no row image, so for those
//! the merge falls back to the utimestamp window, which misses rows dated before it (a late
//! agent's data). Pandora's manual configures `binlog_format=MIXED`; gossip-ha needs ROW with
//! full row images, and says so once instead of failing anything.

use std::fmt;

/// Where the fix is spelled out, for every warning.
const EXAMPLE_CNF: &str = "deploy/examples/mariadb-gossip-ha.cnf";

/// `@@GLOBAL.binlog_format`, both dialects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinlogFormat {
    Row,
    Mixed,
    Statement,
    /// Anything else as the server said it (empty when it could not be read).
    Other(String),
}

impl BinlogFormat {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_uppercase().as_str() {
            "ROW" => BinlogFormat::Row,
            "MIXED" => BinlogFormat::Mixed,
            "STATEMENT" => BinlogFormat::Statement,
            _ => BinlogFormat::Other(text.trim().to_string()),
        }
    }
}

impl fmt::Display for BinlogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinlogFormat::Row => f.write_str("ROW"),
            BinlogFormat::Mixed => f.write_str("MIXED"),
            BinlogFormat::Statement => f.write_str("STATEMENT"),
            BinlogFormat::Other(text) => f.write_str(unreadable_if_empty(text)),
        }
    }
}

/// `@@GLOBAL.binlog_row_image`, both dialects: which columns a ROW event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinlogRowImage {
    Full,
    Minimal,
    NoBlob,
    /// Anything else (MariaDB's FULL_NODUP, or empty when it could not be read).
    Other(String),
}

impl BinlogRowImage {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_uppercase().as_str() {
            "FULL" => BinlogRowImage::Full,
            "MINIMAL" => BinlogRowImage::Minimal,
            "NOBLOB" => BinlogRowImage::NoBlob,
            _ => BinlogRowImage::Other(text.trim().to_string()),
        }
    }

    /// What such an image leaves out of an inserted row, for the warning.
    fn lacks(&self) -> &'static str {
        match self {
            BinlogRowImage::Full => "nothing",
            BinlogRowImage::Minimal => "leave out the columns a statement did not set",
            BinlogRowImage::NoBlob => "leave out the BLOB and TEXT columns a statement did not set",
            BinlogRowImage::Other(_) => "may leave out columns",
        }
    }
}

impl fmt::Display for BinlogRowImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BinlogRowImage::Full => f.write_str("FULL"),
            BinlogRowImage::Minimal => f.write_str("MINIMAL"),
            BinlogRowImage::NoBlob => f.write_str("NOBLOB"),
            BinlogRowImage::Other(text) => f.write_str(unreadable_if_empty(text)),
        }
    }
}

fn unreadable_if_empty(text: &str) -> &str {
    if text.is_empty() {
        "(unreadable)"
    } else {
        text
    }
}

/// Why a split-brain merge of this server's writes could not be exact, or `None` when it can
/// (ROW events with full images). Without a binary log there is nothing to merge from at all,
/// and the node is never promoted (said elsewhere), so the format does not matter then.
pub fn binlog_warning(binlog_enabled: bool, format: &BinlogFormat, row_image: &BinlogRowImage) -> Option<String> {
    if !binlog_enabled {
        return None;
    }
    match (format, row_image) {
        (BinlogFormat::Row, BinlogRowImage::Full) => None,
        // The merge writes a column an image lacks as DEFAULT: right for a constant default, not
        // for one of the moment (CURRENT_TIMESTAMP) or one changed since.
        (BinlogFormat::Row, image) => Some(format!(
            "this server logs ROW events with binlog_row_image={image}: a split-brain merge copies rows exactly only from ROW events with binlog_row_image=FULL; {image} images {}, which a merge can only fill with the winner's column defaults (set binlog_row_image=FULL, see {EXAMPLE_CNF})",
            image.lacks()
        )),
        (format, _) => Some(format!(
            "this server logs binlog_format={format}: a split-brain merge copies rows exactly only from ROW events with binlog_row_image=FULL; statement events fall back to the utimestamp window and may miss late-dated rows (set binlog_format=ROW and binlog_row_image=FULL, see {EXAMPLE_CNF})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_either_dialect_spells_them() {
        let formats = [
            ("ROW", BinlogFormat::Row),
            ("mixed", BinlogFormat::Mixed),
            (" STATEMENT ", BinlogFormat::Statement),
            ("", BinlogFormat::Other(String::new())),
        ];
        for (text, format) in formats {
            assert_eq!(BinlogFormat::parse(text), format, "{text:?}");
        }
        let images = [
            ("FULL", BinlogRowImage::Full),
            ("minimal", BinlogRowImage::Minimal),
            ("NOBLOB", BinlogRowImage::NoBlob),
            ("FULL_NODUP", BinlogRowImage::Other("FULL_NODUP".into())),
        ];
        for (text, image) in images {
            assert_eq!(BinlogRowImage::parse(text), image, "{text:?}");
        }
    }

    #[test]
    fn only_row_events_with_full_images_merge_exactly() {
        use BinlogFormat as F;
        use BinlogRowImage as I;
        let other = |text: &str| I::Other(text.into());
        // (binary log on, format, row image, the warning names…), `None`: no warning.
        let window = "statement events fall back to the utimestamp window";
        let defaults = "fill with the winner's column defaults";
        let cases: [(bool, F, I, Option<&[&str]>); 10] = [
            (true, F::Row, I::Full, None),
            (
                true,
                F::Mixed,
                I::Full,
                Some(&["binlog_format=MIXED", window, "set binlog_format=ROW"]),
            ),
            (
                true,
                F::Statement,
                I::Full,
                Some(&[
                    "binlog_format=STATEMENT",
                    window,
                    "set binlog_format=ROW and binlog_row_image=FULL",
                ]),
            ),
            // The format is the bigger problem: its fix names the image too.
            (
                true,
                F::Mixed,
                I::Minimal,
                Some(&["binlog_format=MIXED", window, "binlog_row_image=FULL"]),
            ),
            (
                true,
                F::Row,
                I::Minimal,
                Some(&[
                    "binlog_row_image=MINIMAL",
                    "did not set",
                    defaults,
                    "set binlog_row_image=FULL",
                ]),
            ),
            (
                true,
                F::Row,
                I::NoBlob,
                Some(&[
                    "binlog_row_image=NOBLOB",
                    "BLOB and TEXT",
                    defaults,
                    "set binlog_row_image=FULL",
                ]),
            ),
            (
                true,
                F::Row,
                other("FULL_NODUP"),
                Some(&["binlog_row_image=FULL_NODUP", "may leave out columns", defaults]),
            ),
            (
                true,
                F::Other(String::new()),
                I::Full,
                Some(&["binlog_format=(unreadable)", window]),
            ),
            // No binary log: nothing to merge from, whatever the format says.
            (false, F::Mixed, I::Full, None),
            (false, F::Row, I::Minimal, None),
        ];
        for (enabled, format, image, expected) in cases {
            let warning = binlog_warning(enabled, &format, &image);
            let case = format!("log_bin {enabled}, {format}, {image}");
            match (expected, warning) {
                (None, None) => {}
                (None, Some(warning)) => panic!("{case}: unexpected warning: {warning}"),
                (Some(_), None) => panic!("{case}: no warning"),
                (Some(fragments), Some(warning)) => {
                    let always = [
                        EXAMPLE_CNF,
                        "copies rows exactly only from ROW events with binlog_row_image=FULL",
                    ];
                    for fragment in fragments.iter().chain(&always) {
                        assert!(warning.contains(fragment), "{case}: `{fragment}` not in: {warning}");
                    }
                }
            }
        }
    }
}
