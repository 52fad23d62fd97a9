//! What a statement event of the binary log (a `QUERY_EVENT`: DDL, or DML logged as a statement
//! under `binlog_format=MIXED` or `STATEMENT`) wrote to, read from its text. Only the first
//! table a statement names is read: enough to tell a merged table's rows, which the merge then
//! copies by their time, from everything else, which is saved and reported.

/// The target of one logged statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, `XA …`, `SAVEPOINT …`: no data of its own.
    TransactionControl,
    /// `INSERT`, `REPLACE`, `UPDATE`, `DELETE` of `database.table` (the event's default
    /// database when the statement names none).
    Write {
        verb: Verb,
        database: String,
        table: String,
    },
    /// Anything else (DDL, `SET`, a call): its first word, upper-cased.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Insert,
    Update,
    Delete,
}

/// Reads `sql`, logged with `default_database` as the session's current one.
pub fn classify(sql: &str, default_database: &str) -> Statement {
    let mut words = Words::new(sql);
    let Some(first) = words.next_word() else {
        return Statement::Other(String::new());
    };
    let first = first.to_ascii_uppercase();
    let (verb, skipped, required): (Verb, &[&str], Option<&str>) = match first.as_str() {
        "BEGIN" | "COMMIT" | "ROLLBACK" | "XA" | "SAVEPOINT" | "RELEASE" => return Statement::TransactionControl,
        "INSERT" | "REPLACE" => (
            Verb::Insert,
            &["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"],
            Some("INTO"),
        ),
        "UPDATE" => (Verb::Update, &["LOW_PRIORITY", "IGNORE"], None),
        "DELETE" => (Verb::Delete, &["LOW_PRIORITY", "QUICK", "IGNORE"], Some("FROM")),
        _ => return Statement::Other(first),
    };
    let mut next = words.next_word();
    while next
        .as_deref()
        .is_some_and(|word| skipped.iter().any(|s| word.eq_ignore_ascii_case(s)))
    {
        next = words.next_word();
    }
    if let Some(keyword) = required {
        // `INSERT t VALUES …` may leave out INTO.
        if next.as_deref().is_some_and(|word| word.eq_ignore_ascii_case(keyword)) {
            next = words.next_word();
        }
    }
    let Some(name) = next else {
        return Statement::Other(first);
    };
    let (database, table) = match name.split_once('.') {
        Some((database, table)) => (unquote(database), unquote(table)),
        None => (default_database.to_string(), unquote(&name)),
    };
    Statement::Write { verb, database, table }
}

fn unquote(name: &str) -> String {
    let trimmed = name.trim();
    match trimmed.strip_prefix('`').and_then(|rest| rest.strip_suffix('`')) {
        Some(inner) => inner.replace("``", "`"),
        None => trimmed.to_string(),
    }
}

/// Words of SQL text, comments skipped; a word is a run up to whitespace, `(` or `,`, with
/// backquoted parts kept whole (`` `my db`.`t` `` is one word).
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(sql: &'a str) -> Self {
        Words { rest: sql }
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(after) = self.rest.strip_prefix("/*") {
                self.rest = after.split_once("*/").map_or("", |(_, rest)| rest);
            } else if self.rest.starts_with("-- ") || self.rest.starts_with('#') {
                self.rest = self.rest.split_once('\n').map_or("", |(_, rest)| rest);
            } else {
                return;
            }
        }
    }

    fn next_word(&mut self) -> Option<String> {
        self.skip_space_and_comments();
        let mut quoted = false;
        let end = self
            .rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '`' {
                    quoted = !quoted;
                }
                !quoted && (c.is_whitespace() || c == '(' || c == ',' || c == ';')
            })
            .map_or(self.rest.len(), |(index, _)| index);
        let word = &self.rest[..end];
        self.rest = &self.rest[end..];
        (!word.is_empty()).then(|| word.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::{classify, Statement, Verb};

    fn write(verb: Verb, database: &str, table: &str) -> Statement {
        Statement::Write {
            verb,
            database: database.into(),
            table: table.into(),
        }
    }

    #[test]
    fn logged_statements_name_what_they_wrote() {
        use Verb::*;
        let cases: &[(&str, Statement)] = &[
            ("BEGIN", Statement::TransactionControl),
            ("  commit", Statement::TransactionControl),
            (
                "INSERT INTO tagente_datos (id_agente_modulo, datos) VALUES (1, 2)",
                write(Insert, "pandora", "tagente_datos"),
            ),
            (
                "insert into `pandora`.`tevento`(evento) values ('x')",
                write(Insert, "pandora", "tevento"),
            ),
            ("INSERT IGNORE tconfig VALUES (1)", write(Insert, "pandora", "tconfig")),
            (
                "/* Pandora */ REPLACE LOW_PRIORITY INTO other.t SET a = 1",
                write(Insert, "other", "t"),
            ),
            (
                "UPDATE tagente_estado SET estado = 1 WHERE id_agente_estado = 5",
                write(Update, "pandora", "tagente_estado"),
            ),
            (
                "DELETE QUICK FROM `my db`.`t``x` WHERE 1",
                write(Delete, "my db", "t`x"),
            ),
            (
                "-- late data\nINSERT INTO tagente_datos VALUES (1, 2, 3)",
                write(Insert, "pandora", "tagente_datos"),
            ),
            ("ALTER TABLE tevento ADD COLUMN x INT", Statement::Other("ALTER".into())),
            ("", Statement::Other(String::new())),
            ("INSERT", Statement::Other("INSERT".into())),
        ];
        for (sql, expected) in cases {
            assert_eq!(classify(sql, "pandora"), *expected, "{sql}");
        }
    }
}
