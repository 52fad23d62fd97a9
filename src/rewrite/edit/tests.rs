//! Golden cases for each kind of rewrite: (input, expected output) pairs, tricky files included.

use super::*;

#[test]
fn token_golden_cases() {
    let cases: &[(&str, &str, &str)] = &[
        // (name, input, expected) with `dbhost` set to 10.0.0.2
        (
            "plain",
            "dbhost 10.0.0.1\ndbport 3306\n",
            "dbhost 10.0.0.2\ndbport 3306\n",
        ),
        (
            "crlf kept",
            "dbname pandora\r\ndbhost 10.0.0.1\r\n",
            "dbname pandora\r\ndbhost 10.0.0.2\r\n",
        ),
        (
            "no trailing newline",
            "dbport 3306\ndbhost 10.0.0.1",
            "dbport 3306\ndbhost 10.0.0.2",
        ),
        (
            "duplicates: the last wins, as Pandora reads it",
            "dbhost a\ndbhost b\n",
            "dbhost a\ndbhost 10.0.0.2\n",
        ),
        (
            "commented lines untouched",
            "#dbhost old\ndbhost a\n# dbhost x\n",
            "#dbhost old\ndbhost 10.0.0.2\n# dbhost x\n",
        ),
        (
            "case-insensitive, spelling and separator kept",
            "DBHOST\t\ta\n",
            "DBHOST\t\t10.0.0.2\n",
        ),
        (
            "prefix is not the token",
            "dbhostname a\n",
            "dbhostname a\ndbhost 10.0.0.2\n",
        ),
        ("absent: appended", "dbport 3306\n", "dbport 3306\ndbhost 10.0.0.2\n"),
        (
            "absent, no newline at end",
            "dbport 3306",
            "dbport 3306\ndbhost 10.0.0.2\n",
        ),
        (
            "absent, crlf file",
            "dbport 3306\r\n",
            "dbport 3306\r\ndbhost 10.0.0.2\r\n",
        ),
        ("empty file", "", "dbhost 10.0.0.2\n"),
        (
            "indented lines do not match",
            "  dbhost a\n",
            "  dbhost a\ndbhost 10.0.0.2\n",
        ),
        (
            "only commented: appended",
            "#dbhost a\n",
            "#dbhost a\ndbhost 10.0.0.2\n",
        ),
    ];
    for (name, input, expected) in cases {
        assert_eq!(token(input, "dbhost", "10.0.0.2").unwrap(), *expected, "{name}");
    }
}

#[test]
fn token_refuses_values_that_would_break_the_file() {
    for bad in ["", "a\nb", "a\"b", "a'b", "a\\b"] {
        assert!(token("dbhost a\n", "dbhost", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn php_golden_cases() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "double quotes with trailing comment",
            "<?php\n$config[\"dbhost\"]=\"127.0.0.1\"; // DB Host\n",
            "<?php\n$config[\"dbhost\"]=\"10.0.0.2\"; // DB Host\n",
        ),
        (
            "single quotes and spaces",
            "<?php\n  $config['dbhost'] = 'old';\n",
            "<?php\n  $config['dbhost'] = '10.0.0.2';\n",
        ),
        (
            "block comment untouched",
            "<?php\n/*\n$config[\"dbhost\"]=\"commented\";\n*/\n$config[\"dbhost\"]=\"live\";\n",
            "<?php\n/*\n$config[\"dbhost\"]=\"commented\";\n*/\n$config[\"dbhost\"]=\"10.0.0.2\";\n",
        ),
        (
            "line comments untouched",
            "<?php\n$config[\"dbhost\"]=\"live\";\n// $config[\"dbhost\"]=\"x\";\n# $config[\"dbhost\"]=\"y\";\n",
            "<?php\n$config[\"dbhost\"]=\"10.0.0.2\";\n// $config[\"dbhost\"]=\"x\";\n# $config[\"dbhost\"]=\"y\";\n",
        ),
        (
            "crlf and the last assignment",
            "<?php\r\n$config[\"dbhost\"]=\"a\";\r\n$config[\"dbhost\"]=\"b\";\r\n",
            "<?php\r\n$config[\"dbhost\"]=\"a\";\r\n$config[\"dbhost\"]=\"10.0.0.2\";\r\n",
        ),
        (
            "other keys untouched",
            "<?php\n$config[\"dbname\"]=\"pandora\";\n$config[\"dbhost\"]=\"a\";",
            "<?php\n$config[\"dbname\"]=\"pandora\";\n$config[\"dbhost\"]=\"10.0.0.2\";",
        ),
        (
            "one-line block comment before the live line",
            "<?php\n/* $config[\"dbhost\"]=\"x\"; */\n$config[\"dbhost\"]=\"a\";\n",
            "<?php\n/* $config[\"dbhost\"]=\"x\"; */\n$config[\"dbhost\"]=\"10.0.0.2\";\n",
        ),
    ];
    for (name, input, expected) in cases {
        assert_eq!(php(input, "dbhost", "10.0.0.2").unwrap(), *expected, "{name}");
    }
}

#[test]
fn php_without_a_live_assignment_is_an_error_not_a_guess() {
    let only_commented = "<?php\n/*\n$config[\"dbhost\"]=\"x\";\n*/\n// $config[\"dbhost\"]=\"y\";\n";
    assert_eq!(
        php(only_commented, "dbhost", "10.0.0.2").unwrap_err(),
        EditError::NoPhpAssignment("dbhost".into())
    );
    assert!(php("<?php\n$config[\"dbhostx\"]=\"a\";\n", "dbhost", "b").is_err());
}

#[test]
fn ha_hosts_file_is_the_address_alone() {
    assert_eq!(ha_hosts_file("172.16.0.8").unwrap(), "172.16.0.8");
    assert!(ha_hosts_file("a\nb").is_err());
}

#[test]
fn templates_render_known_names_and_refuse_unknown_ones() {
    let variables: BTreeMap<&str, String> = [
        ("db_primary_host", "10.0.0.2".to_string()),
        ("db_primary_port", "3306".into()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        template(
            "server db {{db_primary_host}}:{{ db_primary_port }} check\n",
            &variables
        )
        .unwrap(),
        "server db 10.0.0.2:3306 check\n"
    );
    let err = template("{{nope}}", &variables).unwrap_err().to_string();
    assert!(err.contains("`{{nope}}`") && err.contains("db_primary_host"), "{err}");
    assert_eq!(
        template("x {{db_primary_host", &variables).unwrap_err(),
        EditError::Unclosed(2)
    );
}

/// The console's packaged `include/config.inc.php` has its settings only in comments.
const CONFIG_INC_PHP: &str = include_str!("../../../tests/fixtures/console_config.inc.php");

#[test]
fn php_adds_the_assignment_after_the_open_tag_only_when_asked() {
    assert_eq!(
        php(CONFIG_INC_PHP, "dbhost", "10.0.0.2").unwrap_err(),
        EditError::NoPhpAssignment("dbhost".into())
    );
    let message = EditError::NoPhpAssignment("dbhost".into()).to_string();
    assert!(
        message.contains("insert_if_missing = true") && message.contains("include/config.inc.php"),
        "{message}"
    );

    let added = php_or_insert(CONFIG_INC_PHP, "dbhost", "10.0.0.2").unwrap();
    let line = "$config[\"dbhost\"]=\"10.0.0.2\"; // added by gossip-ha (insert_if_missing)\n";
    assert_eq!(added, format!("<?php\n{line}{}", &CONFIG_INC_PHP["<?php\n".len()..]));
    // From then on it is an ordinary live assignment: edited in place, nothing added again.
    let moved = php_or_insert(&added, "dbhost", "10.0.0.3").unwrap();
    assert_eq!(moved, added.replace("10.0.0.2", "10.0.0.3"));
    assert_eq!(php(&added, "dbhost", "10.0.0.3").unwrap(), moved);
}

#[test]
fn php_insertion_keeps_line_endings_and_needs_a_bare_open_tag() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "crlf",
            "<?php\r\n/* $config[\"dbhost\"]=\"x\"; */\r\n",
            "<?php\r\n$config[\"dbhost\"]=\"h\"; // added by gossip-ha (insert_if_missing)\r\n/* $config[\"dbhost\"]=\"x\"; */\r\n",
        ),
        (
            "open tag alone, no newline",
            "<?php",
            "<?php\n$config[\"dbhost\"]=\"h\"; // added by gossip-ha (insert_if_missing)\n",
        ),
        (
            "a live assignment is edited, nothing added",
            "<?php\n$config[\"dbhost\"]=\"old\";\n",
            "<?php\n$config[\"dbhost\"]=\"h\";\n",
        ),
    ];
    for (name, input, expected) in cases {
        assert_eq!(php_or_insert(input, "dbhost", "h").unwrap(), *expected, "{name}");
    }
    for no_place in ["", "<?php /* starts a comment\n*/\n", "<html>\n"] {
        assert_eq!(
            php_or_insert(no_place, "dbhost", "h").unwrap_err(),
            EditError::NoPhpOpenTag("dbhost".into()),
            "{no_place:?}"
        );
    }
}
