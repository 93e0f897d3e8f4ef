//! WeCom's Markdown, and how text another party wrote is made inert in it.
//! Pure.
//!
//! What WeCom renders in a `markdown` message and in a robot's stream
//! (developer.work.weixin.qq.com, "markdown类型" and "markdown_v2类型"):
//! headers (`#` at a line's start), bold and italics (`**`, `*`), links
//! (`[text](url)`) and images (`![text](url)`), inline code (`` ` ``),
//! quotes (`>` at a line's start), three font colours
//! (`<font color="info|comment|warning">`), mentions (`<@userid>`), and in
//! markdown_v2 lists, tables, rules and strikethrough.
//!
//! WeCom documents no escape character, and a backslash is shown as is
//! inside code spans, where most of our untrusted text lands (commands,
//! output). So [`escape`] does not rely on the renderer: it replaces the
//! characters that open a construct with their full-width forms
//! (`<` → `＜`, `[` → `［`, …), which read the same to a person, survive
//! every context (plain text, code span, code block) and can open nothing.
//! Backticks are left alone: a backtick in untrusted text can only end or
//! start a code span, and the text on either side is escaped anyway.

/// Escapes text that another party wrote (a command, its output, a node's
/// GPU name, a deny reason, a chat user's words) for WeCom Markdown: no
/// link, image, mention, font tag, entity, header, quote, bold, italic or
/// strikethrough can come out of it.
pub fn escape(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    // At the start of a line: only spaces (or a header's `#`s) seen since
    // the last newline.
    let mut line_start = true;
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| chars.get(p)).copied();
        let next = chars.get(i + 1).copied();
        let alnum = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
        let shown = match c {
            // Tags (`<font>`, `<@userid>`, any HTML) and quotes.
            '<' => '＜',
            '>' => '＞',
            // Links and images.
            '[' => '［',
            ']' => '］',
            // Bold and italics.
            '*' => '＊',
            // Emphasis by underscore needs one not inside a word
            // (CommonMark's flanking rule): `CUDA_VISIBLE_DEVICES` stays.
            '_' if !(alnum(prev) && alnum(next)) => '＿',
            // Strikethrough is `~~`; a lone `~` (`~/data`) stays.
            '~' if prev == Some('~') || next == Some('~') => '～',
            // An entity (`&lt;`, `&#60;`) a renderer might decode into a tag.
            '&' if next.is_some_and(|n| n.is_ascii_alphanumeric() || n == '#') => '＆',
            // A header at a line's start; `a # b` stays.
            '#' if line_start => '＃',
            // A trailing backslash could escape the character our own
            // message puts next.
            '\\' if next.is_none() => '＼',
            c => c,
        };
        out.push(shown);
        line_start = c == '\n' || (line_start && matches!(c, ' ' | '\t' | '#'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructs_come_out_inert() {
        let cases = [
            // Links and images.
            ("[click](http://evil)", "［click］(http://evil)"),
            ("![x](http://evil/p.png)", "!［x］(http://evil/p.png)"),
            // Mentions, font colours, any tag.
            ("<@all>", "＜@all＞"),
            ("<@zhangsan>", "＜@zhangsan＞"),
            (
                "<font color=\"warning\">APPROVED</font>",
                "＜font color=\"warning\"＞APPROVED＜/font＞",
            ),
            ("<!-- hidden -->", "＜!-- hidden --＞"),
            // Entities a renderer might decode.
            ("&lt;@all&gt;", "＆lt;@all＆gt;"),
            ("&#60;@all&#62;", "＆#60;@all＆#62;"),
            // Headers and quotes at a line's start, not elsewhere.
            ("# Approved", "＃ Approved"),
            ("ok\n## Approved", "ok\n＃＃ Approved"),
            ("ok\n  # x", "ok\n  ＃ x"),
            ("a # b", "a # b"),
            ("> quoted", "＞ quoted"),
            ("a\n> quoted", "a\n＞ quoted"),
            // Bold, italics, strikethrough.
            ("**bold**", "＊＊bold＊＊"),
            ("*it*", "＊it＊"),
            ("_it_", "＿it＿"),
            ("__init__.py", "＿＿init＿＿.py"),
            ("~~gone~~", "～～gone～～"),
            // A trailing backslash.
            ("C:\\", "C:＼"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }

    #[test]
    fn ordinary_text_reads_the_same() {
        for s in [
            "nvidia-smi --query-gpu=name --format=csv",
            "python train.py --epochs 3 && echo done",
            "CUDA_VISIBLE_DEVICES=0 train_model.py",
            "ls ~/data | wc -l",
            "sed 's/a\\.b/c/' x",
            "NVIDIA H100 80GB HBM3",
            "训练任务 已完成",
            "",
        ] {
            assert_eq!(escape(s), s);
        }
    }

    #[test]
    fn no_hostile_input_keeps_an_opening_character() {
        let hostile = [
            "[a](b)<@all><font color=\"info\">x</font>**y**",
            "\n# h\n> q\n[[[[",
            "<<<<>>>>]]]]",
            "`[x](y)` ```<@all>```",
        ];
        for h in hostile {
            let e = escape(h);
            assert!(!e.contains(['<', '>', '[', ']', '*']), "{h:?} became {e:?}");
            assert!(!e.lines().any(|l| l.trim_start().starts_with('#')), "{e:?}");
        }
    }
}
