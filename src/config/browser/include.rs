//! `include: file.yaml#name`: a sequence of steps written once (a login)
//! and spliced into several flows, with `${VAR}` parameters.
//!
//! The file sits beside the checks file (or below it: the checks directory
//! itself is read as checks files, so a `flows/` directory keeps them
//! apart) and maps names to step lists. `with:` gives parameters: each
//! `${NAME}` of the sequence that names one is replaced by its value before
//! decoding, and every other `${NAME}` comes from the environment as
//! anywhere else. A parameter whose value came from the environment is a
//! secret already (it was interpolated in the including file), so it stays
//! masked; a plain one (a base URL) is not turned into one. Errors inside
//! the sequence carry the included file's path and position.

use crate::config::decode::Ctx;
use crate::config::yaml::{self, Node, Value};
use crate::limits;

use super::Step;

/// Whether a step is an `include:` (it expands to several).
pub(super) fn is_include(node: &Node) -> bool {
    matches!(&node.value, Value::Map(entries)
        if entries.iter().any(|(k, _)| matches!(&k.value, Value::String(s) if s == "include")))
}

/// The steps an `include:` step stands for.
pub(super) fn expand(ctx: &mut Ctx, index: usize, node: &Node) -> Option<Vec<Step>> {
    let what = format!("`include` (step {index})");
    let f = ctx.fields(node, &format!("step {index}"), &["include"])?;
    let value = f.get("include")?;
    let (reference, params) = match &value.value {
        Value::Map(_) => {
            let g = ctx.fields(value, &what, &["flow", "with"])?;
            let Some(flow) = g.get("flow") else {
                ctx.error(g.pos, format!("{what} needs the `flow` (`file.yaml#name`)"));
                return None;
            };
            let reference = ctx.string(flow, "`flow`");
            let params = match g.get("with") {
                Some(w) => ctx.string_map(w, "`with`"),
                None => Some(Vec::new()),
            };
            (reference?, params?)
        }
        _ => (ctx.string(value, &what)?, Vec::new()),
    };
    if params.len() > limits::BROWSER_INCLUDE_PARAMS_MAX {
        ctx.error(
            value.pos,
            format!(
                "{what} has {} parameters; at most {}",
                params.len(),
                limits::BROWSER_INCLUDE_PARAMS_MAX
            ),
        );
        return None;
    }
    for (name, _) in &params {
        let valid = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid {
            ctx.error(
                value.pos,
                format!("{what}: `{name}` is not a variable name"),
            );
            return None;
        }
    }
    let Some((file, name)) = reference
        .rsplit_once('#')
        .filter(|(f, n)| !f.is_empty() && !n.is_empty())
    else {
        ctx.error(
            value.pos,
            format!("{what}: `{reference}` is not `file.yaml#name`"),
        );
        return None;
    };
    let path = ctx
        .file
        .parent()
        .map(|dir| dir.join(file))
        .unwrap_or_else(|| file.into());
    let text = match read_bounded(&path) {
        Ok(text) => text,
        Err(why) => {
            ctx.error(
                value.pos,
                format!("{what}: cannot read {}: {why}", path.display()),
            );
            return None;
        }
    };
    let root = match yaml::parse(&text) {
        Ok(root) => root,
        Err(e) => {
            let mut sub = Ctx {
                file: &path,
                errors: &mut *ctx.errors,
                secrets: &mut *ctx.secrets,
                env: ctx.env,
            };
            sub.error(e.pos, e.message);
            return None;
        }
    };
    let found = match &root.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::String(s) if s == name))
            .map(|(_, v)| v.clone()),
        _ => None,
    };
    let Some(mut sequence) = found else {
        ctx.error(
            value.pos,
            format!("{what}: {} has no sequence `{name}`", path.display()),
        );
        return None;
    };
    substitute(&mut sequence, &params, true);
    let mut sub = Ctx {
        file: &path,
        errors: &mut *ctx.errors,
        secrets: &mut *ctx.secrets,
        env: ctx.env,
    };
    let list = match &sequence.value {
        Value::Map(_) => {
            let g = sub.fields(&sequence, &format!("sequence `{name}`"), &["steps"])?;
            let Some(steps) = g.get("steps") else {
                sub.error(g.pos, format!("sequence `{name}` needs `steps` (a list)"));
                return None;
            };
            steps.clone()
        }
        _ => sequence,
    };
    let items = sub.list(&list, &format!("sequence `{name}`"))?;
    if items.is_empty() || items.len() > limits::BROWSER_STEPS_MAX {
        sub.error(
            list.pos,
            format!(
                "sequence `{name}` needs between 1 and {} steps",
                limits::BROWSER_STEPS_MAX
            ),
        );
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match super::steps::decode_step(&mut sub, i + 1, item) {
            Some(step) => steps.push(step),
            None => ok = false,
        }
    }
    ok.then_some(steps)
}

/// The file's text, refusing one larger than an include file needs to be.
fn read_bounded(path: &std::path::Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    if meta.len() > limits::BROWSER_INCLUDE_BYTES_MAX {
        return Err(format!(
            "{} bytes; at most {}",
            meta.len(),
            limits::BROWSER_INCLUDE_BYTES_MAX
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Replaces `${NAME}` of every parameter in the strings of `node`. A value
/// holding `${` keeps it literal (`$${`), so a parameter never reaches
/// into the environment by its value.
/// `literal`: the values are interpolated already (a `${` in them stays
/// text); otherwise they are the raw text of `with:`, interpolated later.
fn substitute(node: &mut Node, params: &[(String, String)], literal: bool) {
    match &mut node.value {
        Value::String(s) => {
            for (name, value) in params {
                let pattern = format!("${{{name}}}");
                if s.contains(&pattern) {
                    let value = if literal {
                        value.replace("${", "$${")
                    } else {
                        value.clone()
                    };
                    *s = s.replace(&pattern, &value);
                }
            }
        }
        Value::Seq(items) => {
            for item in items {
                substitute(item, params, literal);
            }
        }
        Value::Map(entries) => {
            for (_, v) in entries {
                substitute(v, params, literal);
            }
        }
        _ => {}
    }
}

/// A check's tree with each `include:` of its browser steps replaced by
/// the included steps, parameters put in as written (their `${VAR}`s
/// interpolated where the tree is decoded): what a remote probe, which has
/// no `checks/` directory, is sent. The check was decoded already, so
/// anything unreadable now is left as it was.
pub(crate) fn inline_includes(file: &std::path::Path, check: &Node) -> Node {
    let mut out = check.clone();
    let Some(steps) = map_get_mut(&mut out, "browser").and_then(|b| map_get_mut(b, "steps")) else {
        return out;
    };
    let Value::Seq(items) = &mut steps.value else {
        return out;
    };
    let mut inlined = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match is_include(&item)
            .then(|| included_raw(file, &item))
            .flatten()
        {
            Some(steps) => inlined.extend(steps),
            None => inlined.push(item),
        }
    }
    *items = inlined;
    out
}

fn map_get_mut<'n>(node: &'n mut Node, key: &str) -> Option<&'n mut Node> {
    match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| matches!(&k.value, Value::String(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn map_get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| matches!(&k.value, Value::String(s) if s == key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// The step nodes an include stands for, parameters as written.
fn included_raw(file: &std::path::Path, item: &Node) -> Option<Vec<Node>> {
    let value = map_get(item, "include")?;
    let (reference, params) = match &value.value {
        Value::String(s) => (s.clone(), Vec::new()),
        Value::Map(_) => {
            let Value::String(reference) = &map_get(value, "flow")?.value else {
                return None;
            };
            let params = match map_get(value, "with").map(|w| &w.value) {
                Some(Value::Map(entries)) => entries
                    .iter()
                    .filter_map(|(k, v)| match (&k.value, &v.value) {
                        (Value::String(k), Value::String(v) | Value::Number(v)) => {
                            Some((k.clone(), v.clone()))
                        }
                        (Value::String(k), Value::Bool(b)) => Some((k.clone(), b.to_string())),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            (reference.clone(), params)
        }
        _ => return None,
    };
    let (path, name) = reference.rsplit_once('#')?;
    let path = file.parent()?.join(path);
    let root = yaml::parse(&read_bounded(&path).ok()?).ok()?;
    let mut sequence = map_get(&root, name)?.clone();
    substitute(&mut sequence, &params, false);
    let list = match &sequence.value {
        Value::Map(_) => map_get(&sequence, "steps")?.clone(),
        _ => sequence,
    };
    match list.value {
        Value::Seq(items) => Some(items),
        _ => None,
    }
}
