//! The text edits of config rewriting (DESIGN §3), pure: old text and new value in, new text
//! out, every other byte kept. The shell reads and writes the files.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("value `{0}` cannot be written: it is empty or holds a line break, quote or backslash")]
    BadValue(String),
    #[error(
        "no uncommented `$config[\"{0}\"]` assignment found. The console's installer writes one into \
         include/config.php; for a file holding only commented defaults (as the packaged include/config.inc.php \
         does) set `insert_if_missing = true` on this [[rewrite]] target, which adds `$config[\"{0}\"]=\"…\";` \
         on the line after `<?php`, or add that line by hand"
    )]
    NoPhpAssignment(String),
    #[error("no line holding only `<?php` to add `$config[\"{0}\"]` after; add the assignment by hand")]
    NoPhpOpenTag(String),
    #[error("template uses `{{{{{name}}}}}`, which is not one of: {known}")]
    UnknownVariable { name: String, known: String },
    #[error("template has an unclosed `{{{{` at byte {0}")]
    Unclosed(usize),
}

fn check_value(value: &str) -> Result<(), EditError> {
    if value.is_empty() || value.contains(['\n', '\r', '"', '\'', '\\']) {
        return Err(EditError::BadValue(value.to_string()));
    }
    Ok(())
}

/// `pandora_ha_hosts.conf`: the primary's address alone, no newline (what Pandora writes).
pub fn ha_hosts_file(value: &str) -> Result<String, EditError> {
    check_value(value)?;
    Ok(value.to_string())
}

/// Splits into lines that keep their terminator (`\n`, `\r\n`, or none on the last line).
fn lines_with_endings(text: &str) -> Vec<&str> {
    text.split_inclusive('\n').collect()
}

fn body_and_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// A `token value` line of a pandora_server.conf-style file, matched the way the Pandora server
/// reads it (`^token\s`, case-insensitive, `#` lines are comments, the last occurrence wins):
/// the last such line gets the new value; absent, `token value` is appended.
pub fn token(text: &str, token: &str, value: &str) -> Result<String, EditError> {
    check_value(value)?;
    let lines = lines_with_endings(text);
    let matches = |line: &str| {
        let (body, _) = body_and_ending(line);
        !body.starts_with('#')
            && body.len() > token.len()
            && body.is_char_boundary(token.len())
            && body[..token.len()].eq_ignore_ascii_case(token)
            && body[token.len()..].starts_with([' ', '\t'])
    };
    let mut out = String::with_capacity(text.len() + value.len() + token.len() + 2);
    match lines.iter().rposition(|line| matches(line)) {
        Some(index) => {
            for (position, line) in lines.iter().enumerate() {
                if position != index {
                    out.push_str(line);
                    continue;
                }
                let (body, ending) = body_and_ending(line);
                let rest = &body[token.len()..];
                let separator_len = rest.len() - rest.trim_start_matches([' ', '\t']).len();
                out.push_str(&body[..token.len() + separator_len]);
                out.push_str(value);
                out.push_str(ending);
            }
        }
        None => {
            out.push_str(text);
            let ending = if text.contains("\r\n") { "\r\n" } else { "\n" };
            if !text.is_empty() && !text.ends_with('\n') {
                out.push_str(ending);
            }
            out.push_str(token);
            out.push(' ');
            out.push_str(value);
            out.push_str(ending);
        }
    }
    Ok(out)
}

/// Where a `$config['key'] = 'value';` assignment's value sits in a line, if the line is one.
fn php_value_span(code: &str, key: &str) -> Option<(usize, usize)> {
    let indent = code.len() - code.trim_start().len();
    let rest = code[indent..].strip_prefix("$config[")?;
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = rest[1..].strip_prefix(key)?;
    let rest = rest.strip_prefix(quote)?.strip_prefix(']')?;
    let rest = rest.trim_start().strip_prefix('=')?;
    let after_equals = rest.trim_start();
    let value_quote = after_equals.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let start = code.len() - after_equals.len() + 1;
    let end = start + code[start..].find(value_quote)?;
    code[end + 1..].trim_start().starts_with(';').then_some((start, end))
}

/// Tracks `/* … */` across lines: whether `line` starts inside a block comment, and whether the
/// next line will.
fn block_comment_state(line: &str, mut inside: bool) -> bool {
    let bytes = line.as_bytes();
    let mut index = 0;
    while index + 1 < bytes.len() {
        match (inside, bytes[index], bytes[index + 1]) {
            (false, b'/', b'/') | (false, b'#', _) if !inside => return false,
            (false, b'/', b'*') => {
                inside = true;
                index += 2;
            }
            (true, b'*', b'/') => {
                inside = false;
                index += 2;
            }
            _ => index += 1,
        }
    }
    inside
}

/// The console's `config.php`: the last `$config["key"]="…";` line that is code (not inside
/// `/* */`, not a `//` or `#` comment) gets the new value; a trailing comment stays.
pub fn php(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    check_value(value)?;
    let lines = lines_with_endings(text);
    let mut inside_block = false;
    let mut target = None;
    for (index, line) in lines.iter().enumerate() {
        let (body, _) = body_and_ending(line);
        if !inside_block {
            if let Some(span) = php_value_span(body, key) {
                target = Some((index, span));
            }
        }
        inside_block = block_comment_state(body, inside_block);
    }
    let (index, (start, end)) = target.ok_or_else(|| EditError::NoPhpAssignment(key.to_string()))?;
    let mut out = String::with_capacity(text.len() + value.len());
    for (position, line) in lines.iter().enumerate() {
        if position == index {
            out.push_str(&line[..start]);
            out.push_str(value);
            out.push_str(&line[end..]);
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// `php`, or, in a file with no live assignment, one added on the line after the file's first
/// `<?php` line (which must hold nothing else): before any code, so the console has the value
/// before its `config_process.php` connects. Once added, the next edit finds it like any other.
pub fn php_or_insert(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    match php(text, key, value) {
        Err(EditError::NoPhpAssignment(_)) => insert_php(text, key, value),
        edited => edited,
    }
}

fn insert_php(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    check_value(key)?;
    let lines = lines_with_endings(text);
    let no_tag = || EditError::NoPhpOpenTag(key.to_string());
    let open = lines
        .iter()
        .position(|line| line.contains("<?php"))
        .ok_or_else(no_tag)?;
    let (body, ending) = body_and_ending(lines[open]);
    if !body.trim_start_matches('\u{feff}').trim().eq_ignore_ascii_case("<?php") {
        return Err(no_tag());
    }
    let ending = if ending.is_empty() { "\n" } else { ending };
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 64);
    for line in &lines[..open] {
        out.push_str(line);
    }
    out.push_str(body);
    out.push_str(ending);
    out.push_str(&format!(
        "$config[\"{key}\"]=\"{value}\"; // added by gossip-ha (insert_if_missing){ending}"
    ));
    for line in &lines[open + 1..] {
        out.push_str(line);
    }
    Ok(out)
}

/// Renders `{{name}}` placeholders; an unknown name is an error, never an empty string.
pub fn template(template: &str, variables: &BTreeMap<&str, String>) -> Result<String, EditError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or(EditError::Unclosed(template.len() - rest.len() + open))?;
        let name = after[..close].trim();
        let value = variables.get(name).ok_or_else(|| EditError::UnknownVariable {
            name: name.to_string(),
            known: variables.keys().copied().collect::<Vec<_>>().join(", "),
        })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
