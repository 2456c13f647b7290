//! Sanity of a registry that may come from a hostile module.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{CHECK_DEPTH_MAX, Fields, Registry, Shape, TypeBody};

pub(crate) fn validate(registry: &Registry, roots: Option<&[&Shape]>) -> Result<(), String> {
    // Every reference resolves, and collect the zero-width edges: the named
    // types a type contains without an Option, sequence, map or enum tag in
    // between (that is, without consuming any input).
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, def) in &registry.types {
        let mut out = Vec::new();
        let context = format!("type `{id}`");
        match &def.body {
            TypeBody::Struct(fields) => {
                fields_refs(fields, registry, &context, Some(&mut out))?;
            }
            TypeBody::Enum(variants) => {
                for variant in variants {
                    fields_refs(&variant.fields, registry, &context, None)?;
                }
            }
        }
        edges.insert(id, out);
    }
    for root in roots.unwrap_or(&[]) {
        refs(root, registry, "the schema", None, 0)?;
    }
    // A cycle of zero-width edges is a type that contains itself: it has
    // no finite value. Iterative depth-first search (a hostile registry
    // may chain many thousands of types).
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unseen,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = edges.keys().map(|k| (*k, Mark::Unseen)).collect();
    for start in edges.keys() {
        if marks[start] != Mark::Unseen {
            continue;
        }
        let mut stack: Vec<(&str, usize)> = alloc::vec![(start, 0)];
        marks.insert(start, Mark::Open);
        while let Some((id, next)) = stack.last_mut() {
            let targets = &edges[*id];
            if *next < targets.len() {
                let target = targets[*next];
                *next += 1;
                match marks[target] {
                    Mark::Open => {
                        return Err(format!(
                            "type `{target}` contains itself without an Option, Vec, map or enum in between, so it has no finite value"
                        ));
                    }
                    Mark::Unseen => {
                        marks.insert(target, Mark::Open);
                        stack.push((target, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks.insert(id, Mark::Done);
                stack.pop();
            }
        }
    }
    Ok(())
}

fn fields_refs<'a>(
    fields: &'a Fields,
    registry: &Registry,
    context: &str,
    mut zero_width: Option<&mut Vec<&'a str>>,
) -> Result<(), String> {
    match fields {
        Fields::Unit => Ok(()),
        Fields::Newtype(shape) => refs(shape, registry, context, zero_width, 0),
        Fields::Tuple(items) => items
            .iter()
            .try_for_each(|s| refs(s, registry, context, zero_width.as_deref_mut(), 0)),
        Fields::Named(fields) => fields
            .iter()
            .try_for_each(|f| refs(&f.shape, registry, context, zero_width.as_deref_mut(), 0)),
    }
}

/// Checks that `shape` refers only to defined types; collects into
/// `zero_width` (when given) the ones reached without consuming input.
fn refs<'a>(
    shape: &'a Shape,
    registry: &Registry,
    context: &str,
    mut zero_width: Option<&mut Vec<&'a str>>,
    depth: usize,
) -> Result<(), String> {
    if depth >= CHECK_DEPTH_MAX {
        return Err(format!(
            "{context} nests shapes more than {CHECK_DEPTH_MAX} deep"
        ));
    }
    let depth = depth + 1;
    match shape {
        Shape::Named(id) => {
            if registry.get(id).is_none() {
                return Err(format!("{context} refers to `{id}`, which is not defined"));
            }
            if let Some(out) = zero_width {
                out.push(id);
            }
            Ok(())
        }
        Shape::Option(inner) | Shape::Seq(inner) => refs(inner, registry, context, None, depth),
        Shape::Map { key, value } => {
            refs(key, registry, context, None, depth)?;
            refs(value, registry, context, None, depth)
        }
        Shape::Tuple(items) => items
            .iter()
            .try_for_each(|s| refs(s, registry, context, zero_width.as_deref_mut(), depth)),
        Shape::Array { item, len } => {
            let through = if *len > 0 { zero_width } else { None };
            refs(item, registry, context, through, depth)
        }
        _ => Ok(()),
    }
}
