//! Explaining why two argument lists have different fingerprints.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::fingerprint::{Node, STRUCTURE_NODES_MAX, resolve};
use crate::postcard_check::plural;
use crate::{Failure, Field, Fields, Registry, Shape, Step, Variant, render};

/// The first place two argument lists differ, by the same rules as
/// [`args_fingerprint`](crate::args_fingerprint), e.g.
/// "parameter 3 (`amount`): expected i64, given u64",
/// "parameter 1 (`item`): at `item.qty`: expected u32, given String" or
/// "expected 3 arguments, given 2". `names` are the procedure's parameter
/// names (the expected side).
pub fn describe_args_mismatch(
    names: &[String],
    expected: (&[Shape], &Registry),
    given: (&[Shape], &Registry),
) -> String {
    let (expected_params, expected_registry) = expected;
    let (given_params, given_registry) = given;
    if expected_params.len() != given_params.len() {
        return format!(
            "expected {}, given {}",
            plural(expected_params.len(), "argument"),
            given_params.len()
        );
    }
    for (i, (e, g)) in expected_params.iter().zip(given_params).enumerate() {
        let mut comparer = Comparer {
            expected: expected_registry,
            given: given_registry,
            expected_stack: Vec::new(),
            given_stack: Vec::new(),
            nodes_left: STRUCTURE_NODES_MAX,
            in_container: false,
        };
        let Some(failure) = comparer.shape(e, g) else {
            continue;
        };
        let label = match names.get(i) {
            Some(name) => format!("parameter {} (`{name}`)", i + 1),
            None => format!("parameter {}", i + 1),
        };
        if failure.steps.is_empty() && !comparer.in_container {
            return format!("{label}: {}", failure.message);
        }
        let root = match names.get(i) {
            Some(name) => Step::Name(name.clone()),
            None => Step::Position(i),
        };
        return format!("{label}: {}", failure.at(root).into_error());
    }
    String::from("the argument types match")
}

struct Comparer<'e, 'g> {
    expected: &'e Registry,
    given: &'g Registry,
    expected_stack: Vec<&'e str>,
    given_stack: Vec<&'g str>,
    nodes_left: usize,
    /// The difference is in a struct's or enum's own fields or variants,
    /// so even at the top its message names the place.
    in_container: bool,
}

impl<'e, 'g> Comparer<'e, 'g> {
    fn differ(&self, e: &Shape, g: &Shape) -> Option<Failure> {
        Some(Failure::new(format!(
            "expected {}, given {}",
            render(e, self.expected),
            render(g, self.given)
        )))
    }

    fn shape(&mut self, e: &'e Shape, g: &'g Shape) -> Option<Failure> {
        if self.nodes_left == 0 {
            return None; // as far as the fingerprint looks, they agree
        }
        self.nodes_left -= 1;
        let (e_mark, g_mark) = (self.expected_stack.len(), self.given_stack.len());
        let en = resolve(e, self.expected, &mut self.expected_stack);
        let gn = resolve(g, self.given, &mut self.given_stack);
        let outcome = match (en, gn) {
            (Node::Leaf(a), Node::Leaf(b)) if a == b => None,
            (Node::Option(a), Node::Option(b)) | (Node::Seq(a), Node::Seq(b)) => self.shape(a, b),
            (Node::Map(ak, av), Node::Map(bk, bv)) => {
                self.shape(ak, bk).or_else(|| self.shape(av, bv))
            }
            (Node::Tuple(a), Node::Tuple(b)) if a.len() == b.len() => self.positional(a, b),
            (Node::Array(a, n), Node::Array(b, m)) if n == m => self.shape(a, b),
            (Node::Struct(a), Node::Struct(b)) => self.named_fields(a, b),
            (Node::Enum(a), Node::Enum(b)) => self.variants(a, b),
            (Node::BackRef(a), Node::BackRef(b)) if a == b => None,
            (Node::Unknown(a), Node::Unknown(b)) if a == b => None,
            (Node::TooDeep, Node::TooDeep) => None,
            _ => self.differ(e, g),
        };
        self.expected_stack.truncate(e_mark);
        self.given_stack.truncate(g_mark);
        outcome
    }

    fn positional(&mut self, a: &'e [Shape], b: &'g [Shape]) -> Option<Failure> {
        a.iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| self.shape(x, y).map(|f| f.at(Step::Position(i))))
    }

    fn named_fields(&mut self, a: &'e [Field], b: &'g [Field]) -> Option<Failure> {
        let names_a: Vec<&str> = a.iter().map(|f| f.name.as_str()).collect();
        let names_b: Vec<&str> = b.iter().map(|f| f.name.as_str()).collect();
        if names_a != names_b {
            self.in_container = true;
            return Some(Failure::new(names_differ("field", &names_a, &names_b)));
        }
        a.iter().zip(b).find_map(|(x, y)| {
            self.shape(&x.shape, &y.shape)
                .map(|f| f.at(Step::Name(x.name.clone())))
        })
    }

    fn variants(&mut self, a: &'e [Variant], b: &'g [Variant]) -> Option<Failure> {
        let names_a: Vec<&str> = a.iter().map(|v| v.name.as_str()).collect();
        let names_b: Vec<&str> = b.iter().map(|v| v.name.as_str()).collect();
        if names_a != names_b {
            self.in_container = true;
            return Some(Failure::new(names_differ("variant", &names_a, &names_b)));
        }
        a.iter().zip(b).find_map(|(x, y)| {
            self.variant_fields(&x.fields, &y.fields)
                .map(|f| f.at(Step::Name(x.name.clone())))
        })
    }

    fn variant_fields(&mut self, a: &'e Fields, b: &'g Fields) -> Option<Failure> {
        match (a, b) {
            (Fields::Unit, Fields::Unit) => None,
            (Fields::Newtype(x), Fields::Newtype(y)) => self.shape(x, y),
            (Fields::Tuple(x), Fields::Tuple(y)) if x.len() == y.len() => self.positional(x, y),
            (Fields::Named(x), Fields::Named(y)) => self.named_fields(x, y),
            _ => Some(Failure::new(format!(
                "expected {}, given {}",
                fields_kind(a),
                fields_kind(b)
            ))),
        }
    }
}

fn fields_kind(fields: &Fields) -> String {
    match fields {
        Fields::Unit => String::from("a unit variant"),
        Fields::Newtype(_) => String::from("a newtype variant"),
        Fields::Tuple(items) => format!("a tuple variant of {}", plural(items.len(), "field")),
        Fields::Named(fields) => format!("a struct variant of {}", plural(fields.len(), "field")),
    }
}

fn names_differ(what: &str, expected: &[&str], given: &[&str]) -> String {
    if let Some((e, g)) = expected.iter().zip(given).find(|(e, g)| e != g) {
        return format!("expected {what} `{e}`, given {what} `{g}`");
    }
    let list = |names: &[&str]| names.join(", ");
    format!(
        "expected {} ({}), given {} ({})",
        plural(expected.len(), what),
        list(expected),
        given.len(),
        list(given)
    )
}
