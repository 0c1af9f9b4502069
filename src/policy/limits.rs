//! Bounds on Cedar text before Cedar's recursive code sees it.
//!
//! Cedar's parser, validator, evaluator and even the `Drop` of its syntax trees recurse once per
//! level of an expression, and a few hundred bytes of nesting (145 parentheses, a `{a:{a:...}}`
//! record, ten thousand nested `if`s, `1 + 1 + ...` with a hundred thousand terms) overflow a
//! thread's stack, which aborts the whole process: no `catch_unwind` helps. So every text that
//! becomes a policy or schema (upload, start, `--watch`, `reins policy check|test`, replay,
//! stores) passes two guards:
//!
//! - [`check_nesting`]: a single pass over the tokens, with an explicit stack (no recursion), that
//!   bounds the depth of the syntax tree Cedar would build, and refuses text over
//!   [`MAX_NESTING`] with the file, line and column where the limit was crossed;
//! - [`on_parser_stack`]: parsing and validation run on a thread with [`PARSER_STACK_BYTES`] of
//!   stack, far more than text within the limit needs, so a gap in the estimate cannot abort.
//!
//! The bound is an over-estimate by construction. A left-associative chain `a || b || c` is a
//! tree as deep as it is long (Cedar nests binary operators), and an operand sits below every
//! operator of its chain, before or after it, so the depth of a bracketed group is counted as the
//! operators of the whole segment (between commas) around it, plus one, plus its own depth.
//! Operators are `|| && == != < <= > >= + - * ! .` and the keywords `if in has like is`. The
//! evaluator then runs policies within the limit on any thread Reins has (the tests check a
//! policy at the limit on a 2 MiB stack, tokio's default for workers).

use super::Diagnostic;

/// Deepest syntax tree accepted, as estimated by [`check_nesting`]. Hand-written policies stay
/// under 20; a chain `principal == A || principal == B || ...` counts two per term, so a list of
/// more than about 60 principals is better written `principal in [A, B, ...]`, which is flat.
/// Below the 145 parentheses that overflowed a tokio worker's stack when parsing ran there.
pub const MAX_NESTING: usize = 128;

/// Largest policy or schema file accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// Stack of the thread that parses and validates: see the module docs.
pub const PARSER_STACK_BYTES: usize = 256 * 1024 * 1024;

/// One open bracket's segment: operators so far and the deepest group closed in it.
#[derive(Default)]
struct Segment {
    ops: usize,
    deepest_group: usize,
    /// Deepest finished segment of this bracket (between commas).
    deepest_segment: usize,
}

impl Segment {
    fn depth(&self) -> usize {
        self.ops + self.deepest_group
    }

    /// A comma (or `;` inside brackets): siblings do not nest in each other.
    fn next_sibling(&mut self) {
        self.deepest_segment = self.deepest_segment.max(self.depth());
        self.ops = 0;
        self.deepest_group = 0;
    }

    fn finish(mut self) -> usize {
        self.next_sibling();
        self.deepest_segment
    }
}

/// Refuses `text` if it is larger than [`MAX_TEXT_BYTES`] or nests deeper than [`MAX_NESTING`];
/// the diagnostic names `file` and where the limit was crossed.
pub fn check_nesting(file: &str, text: &str) -> Result<(), Diagnostic> {
    let at = |offset: usize, message: String| {
        let (line, column) = super::line_column(text, offset);
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    if text.len() > MAX_TEXT_BYTES {
        return Err(at(
            0,
            format!(
                "{} bytes is over the limit of {MAX_TEXT_BYTES} bytes for one file",
                text.len()
            ),
        ));
    }
    let too_deep = |offset: usize| {
        at(
            offset,
            format!(
                "expression nested deeper than {MAX_NESTING} levels (brackets, `if`s and chained operators); split it into several policies or simplify it"
            ),
        )
    };
    let bytes = text.as_bytes();
    let mut open: Vec<Segment> = vec![Segment::default()];
    // Operators and brackets on the path from the outermost segment to the current one.
    let mut running = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let mut op = false;
        match b {
            b'/' if next == Some(b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => {
                open.push(Segment::default());
                running += 1;
            }
            b')' | b']' | b'}' if open.len() > 1 => {
                if let Some(closed) = open.pop() {
                    running = running.saturating_sub(1 + closed.ops);
                    let depth = closed.finish() + 1;
                    if depth > MAX_NESTING {
                        return Err(too_deep(i));
                    }
                    if let Some(parent) = open.last_mut() {
                        parent.deepest_group = parent.deepest_group.max(depth);
                    }
                }
            }
            b',' | b';' => {
                if let Some(segment) = open.last_mut() {
                    running = running.saturating_sub(segment.ops);
                    segment.next_sibling();
                }
                // A `;` at the top ends a policy: the next one starts from nothing.
                if b == b';' && open.len() == 1 {
                    open = vec![Segment::default()];
                    running = 0;
                }
            }
            b'|' | b'&' if next == Some(b) => {
                op = true;
                i += 1;
            }
            b'=' | b'!' | b'<' | b'>' => {
                op = true;
                if next == Some(b'=') {
                    i += 1;
                }
            }
            b'+' | b'-' | b'*' | b'.' => op = true,
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                op = matches!(&text[start..i], "if" | "in" | "has" | "like" | "is");
                if op && let Some(segment) = open.last_mut() {
                    segment.ops += 1;
                    running += 1;
                    if running > MAX_NESTING || segment.depth() > MAX_NESTING {
                        return Err(too_deep(start));
                    }
                }
                continue;
            }
            _ => {}
        }
        if op && let Some(segment) = open.last_mut() {
            segment.ops += 1;
            running += 1;
        }
        if running > MAX_NESTING || open.last().is_some_and(|s| s.depth() > MAX_NESTING) {
            return Err(too_deep(i));
        }
        i += 1;
    }
    // Unclosed brackets: Cedar's parser reports those; the depth so far still counts.
    let mut depth = 0;
    while let Some(segment) = open.pop() {
        depth = segment.finish().max(depth) + 1;
        if depth > MAX_NESTING + 1 {
            return Err(too_deep(text.len()));
        }
    }
    Ok(())
}

/// Runs `parse` on a thread with [`PARSER_STACK_BYTES`] of stack and returns what it returns. A
/// panic in it is resumed here, as if it had run on this thread.
pub fn on_parser_stack<T: Send>(parse: impl FnOnce() -> T + Send) -> Result<T, std::io::Error> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("reins-parser".into())
            .stack_size(PARSER_STACK_BYTES)
            .spawn_scoped(scope, parse)?;
        match thread.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str) -> bool {
        check_nesting("t.cedar", text).is_ok()
    }

    fn parens(n: usize) -> String {
        format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(n),
            ")".repeat(n)
        )
    }

    fn sum(n: usize) -> String {
        let terms = vec!["context.n"; n].join(" + ");
        format!("permit(principal, action, resource) when {{ ({terms}) != 0 }};")
    }

    fn or(n: usize) -> String {
        let terms = vec!["context.b"; n].join(" || ");
        format!("permit(principal, action, resource) when {{ {terms} }};")
    }

    fn ifs(n: usize) -> String {
        let mut e = "true".to_owned();
        for _ in 0..n {
            e = format!("if context.b then {e} else false");
        }
        format!("permit(principal, action, resource) when {{ {e} }};")
    }

    #[test]
    fn the_reported_attacks_are_refused_with_a_location() {
        let records = format!(
            "permit(principal, action, resource) when {{ context == {}1{} }};",
            "{a:".repeat(1000),
            "}".repeat(1000)
        );
        let sets = format!(
            "permit(principal, action, resource) when {{ context.s == {}1{} }};",
            "[".repeat(1000),
            "]".repeat(1000)
        );
        let ones = format!(
            "permit(principal, action, resource) when {{ {} == 2 }};",
            vec!["1"; 100_000].join(" + ")
        );
        for text in [parens(145), records, sets, ifs(10_000), ones] {
            let Err(d) = check_nesting("deep.cedar", &text) else {
                panic!("accepted {}", &text[..80]);
            };
            assert_eq!(d.file, "deep.cedar");
            assert_eq!(d.line, 1);
            assert!(d.message.contains("nested deeper"), "{}", d.message);
        }
    }

    #[test]
    fn ordinary_policies_pass() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cedar") {
                let text = std::fs::read_to_string(&path).unwrap();
                check_nesting(&path.display().to_string(), &text).unwrap();
            }
        }
        let schema = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/reins.cedarschema"),
        )
        .unwrap();
        check_nesting("reins.cedarschema", &schema).unwrap();
        // Long flat lists are not deep: their elements are siblings.
        let list = vec!["Agent::\"a\""; 10_000].join(", ");
        assert!(depth_ok(&format!(
            "permit(principal in [{list}], action, resource);"
        )));
        // Many policies each near the limit are fine: `;` starts over.
        assert!(depth_ok(&parens(MAX_NESTING - 8).repeat(50)));
        // Brackets and strings inside strings and comments do not count.
        assert!(depth_ok(&format!(
            "// {}\npermit(principal, action, resource) when {{ context.s == \"{}\\\"\" }};",
            "(".repeat(10_000),
            "[".repeat(10_000)
        )));
    }

    #[test]
    fn an_operand_sits_below_every_operator_of_its_chain() {
        // (deep group) || x || x ...: the group is the innermost operand of the whole chain.
        let group = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        let after = vec!["true"; 200].join(" || ");
        let text = format!("permit(principal, action, resource) when {{ {group} || {after} }};");
        assert!(!depth_ok(&text));
    }

    /// The promise the limit rests on: text at the limit parses on the parser's thread, and then
    /// validates, evaluates and drops on a thread with tokio's default worker stack, even in a
    /// debug build. Each shape is as deep as [`check_nesting`] lets through.
    #[test]
    fn policies_at_the_limit_evaluate_on_a_two_mib_stack() {
        let largest = |make: &dyn Fn(usize) -> String| {
            (1..=MAX_NESTING)
                .rev()
                .find(|n| depth_ok(&make(*n)))
                .unwrap()
        };
        let shapes: Vec<String> = vec![
            parens(largest(&parens)),
            or(largest(&or)),
            sum(largest(&sum)),
            ifs(largest(&ifs)),
        ];
        let schema = "entity E; action a appliesTo { principal: E, resource: E, context: { n: Long, b: Bool } };";
        for text in shapes {
            let pack = on_parser_stack(|| {
                crate::policy::PolicyPack::from_sources(
                    "s.cedarschema",
                    schema,
                    vec![("p.cedar".into(), text.clone())],
                )
            })
            .unwrap();
            let evaluated = std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || {
                    let pack = pack.unwrap();
                    let uid = |t: &str, id: &str| {
                        cedar_policy::EntityUid::from_type_name_and_id(
                            t.parse().unwrap(),
                            cedar_policy::EntityId::new(id),
                        )
                    };
                    let context = cedar_policy::Context::from_json_value(
                        serde_json::json!({"n": 1, "b": true}),
                        None,
                    )
                    .unwrap();
                    let request = cedar_policy::Request::new(
                        uid("E", "p"),
                        uid("Action", "a"),
                        uid("E", "r"),
                        context,
                        None,
                    )
                    .unwrap();
                    let answer = pack.is_authorized(&request, &cedar_policy::Entities::empty());
                    drop(pack);
                    answer.decision()
                })
                .unwrap()
                .join();
            assert!(evaluated.is_ok(), "overflowed at the limit");
        }
    }
}
